"""One segment of a partition log: a memory-mapped data file and its three sidecar tables.

Imports: numpy, metaq_fast.message / errors / limits and the storage helpers; the checks of
records and batches (CRC, lengths, id/flag checks, batch hashes) are verify.py's, on the bytes
mapped here.

Files (see files.py): ``<start>.meta`` holds MetaQ records byte for byte; ``<start>.idx`` holds,
per record, its position in the file; ``<start>.chk``, per record, a 32-bit check of its id and
flag (``message.header_checks``); ``<start>.sum`` holds, per appended batch, its end position, the
record count at its end, and the xxh3-64 of its bytes. The data file is the truth; the sidecars
are caches that are verified against it and rebuilt from it when they disagree.

Integrity, and why it is split this way:

* MetaQ's CRC covers a record's data only and costs one call per record. The batch xxh3 covers
  every byte of a batch (headers included) at ~10 GB/s, so verifying stored data is one hash per
  batch, not one per record.
* When a batch hash fails, the damage is pinned to its record: the length chain (from the
  index), the CRC (data and crc field) and the id/flag check (index) together cover every byte
  of every record. Records before the damage are kept; the damaged one is reported, never served.
* Each segment process keeps which batches it has verified; reads verify lazily, once, the
  batches they touch, so a flipped bit in a closed segment is found when read or scrubbed.

Strategy for the writer: the data file is sized to the segment's capacity once (sparse), mapped
once, and disk blocks are reserved ahead of the write position in 16 MiB steps with
``posix_fallocate``; a write therefore never remaps and a full disk is an error at allocation,
not a SIGBUS. The one exception: a filesystem where neither fallocate nor glibc's emulation of
it works (``mapped.allocate`` then only extends the file, sparse, and warns once); a full disk
there is a SIGBUS in the worker, which the supervisor restarts, losing nothing acknowledged. A closed segment is truncated to exactly its records, as MetaQ leaves it.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import numpy as np

from .. import message
from ..errors import StorageError
from ..limits import PREFAULT_AHEAD_BYTES, SEGMENT_GROW_STEP_BYTES
from . import files
from .mapped import PAGE_BYTES, MappedTable, allocate, map_fd, round_up, search
from .prefault import PREFAULTER, populate_now
from .record_index import RecordIndex
from .verify import (HEADER, batch_hash, check_records, good_batch_prefix, last_nonzero,
                     record_problem, scan_valid_records)

log = logging.getLogger(__name__)

SUMS_DTYPE = np.dtype([("end", "<u8"), ("end_record", "<u8"), ("hash", "<u8")])
SUMS_MAGIC = b"MQFSUM01"
# Records re-indexed by recovery or a rebuild are grouped into batches of about this size.
REBUILD_BATCH_BYTES = 1 << 20
REWRITE_CHUNK_BYTES = 4 << 20  # copies of at most this much when rewriting a tail

_ID_RANGE = np.arange(8, dtype=np.int64)
_RECORD_HEADER = struct.Struct(">iiqi")
_hash = batch_hash  # verify.py's: the hash of a batch as the .sum table stores it


class Segment:
    """A segment file. Writable (owned by this process) or read-only (a reader's view)."""

    def __init__(self, directory: Path, start_offset: int, *, writable: bool,
                 create: bool = False, capacity_bytes: int = 0):
        self.directory = Path(directory)
        self.start_offset = start_offset
        self.path = files.data_file(self.directory, start_offset)
        self.writable = writable
        if create:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        else:
            flags = os.O_RDWR if writable else os.O_RDONLY
        self.fd = os.open(self.path, flags, 0o644)
        try:
            self.file_bytes = os.fstat(self.fd).st_size
            self.size = 0 if create else self.file_bytes  # bytes of records (set by recovery)
            self.closed_for_append = not writable
            self._allocated = 0
            self._populated = 0  # pages below this were handed to the prefaulter
            self._data: np.ndarray | None = None
            self._view: memoryview | None = None  # of _data, for scalar writes
            self.index: RecordIndex | None = None
            self.sums: MappedTable | None = None
            self._verified = np.zeros(0, dtype=bool)
            self._bad: dict[int, str] = {}  # record position -> what is wrong with it
            self._scan_verified_end = 0  # for segments without sidecars: CRC-checked prefix
            self._verified_prefix = 0  # every batch before this byte has been verified
            if writable:
                self.capacity = max(round_up(max(capacity_bytes, 1), PAGE_BYTES), self.file_bytes)
                if self.file_bytes < self.capacity:
                    os.ftruncate(self.fd, self.capacity)  # sparse: blocks come with allocate()
                self._allocated = self.file_bytes
                self._data = map_fd(self.fd, self.capacity, True) if self.capacity else None
                self.index = RecordIndex(self.directory, start_offset, writable=True)
                self.sums = MappedTable(files.sums_file(self.directory, start_offset), SUMS_DTYPE,
                                        SUMS_MAGIC, writable=True, grow_entries=1024)
                if create:
                    self.index.reset()
                    self.sums.reset()
            else:
                self.capacity = self.file_bytes
                self._data = map_fd(self.fd, self.file_bytes, False) if self.file_bytes else None
                self._open_sidecars_read_only()
        except BaseException:  # no descriptor or mapping outlives a failed open (EMFILE, ENOMEM)
            self._release()
            raise

    def _open_sidecars_read_only(self) -> None:
        try:
            self.index = RecordIndex(self.directory, self.start_offset, writable=False)
            self.sums = MappedTable(files.sums_file(self.directory, self.start_offset), SUMS_DTYPE,
                                    SUMS_MAGIC, writable=False)
        except (FileNotFoundError, StorageError):
            self.index = self.sums = None

    @property
    def end_offset(self) -> int:
        return self.start_offset + self.size

    def tables(self) -> list[MappedTable]:
        """The sidecar tables that are open."""
        tables = []
        if self.index is not None:
            tables.append(self.index.positions)
            if self.index.checks is not None:
                tables.append(self.index.checks)
        if self.sums is not None:
            tables.append(self.sums)
        return tables

    @property
    def has_sidecars(self) -> bool:
        return self.index is not None and self.sums is not None

    @property
    def record_count(self) -> int:
        return self.index.count if self.index is not None else 0

    def data_view(self, start: int, stop: int) -> np.ndarray:
        """The mapped bytes ``[start, stop)`` (zero-copy). Readers remap if the file grew."""
        if self._data is None or stop > len(self._data):
            self._refresh_data(stop)
        return self._data[start:stop]

    def _refresh_data(self, needed: int) -> None:
        size = os.fstat(self.fd).st_size
        if size < needed:
            raise StorageError(f"{self.path}: {needed} bytes asked, file has {size}")
        self._data = map_fd(self.fd, size, self.writable)
        self.file_bytes = size

    # ---- appending (owner only) -----------------------------------------------------------

    def can_take(self, nbytes: int) -> bool:
        return self.size + nbytes <= self.capacity

    def _reserve(self, end: int) -> None:
        if end <= self._allocated:
            return
        grow_to = min(self.capacity, round_up(end + SEGMENT_GROW_STEP_BYTES, PAGE_BYTES))
        allocate(self.fd, self._allocated, grow_to - self._allocated, self.path)
        self._allocated = grow_to

    def reserve(self, nbytes: int) -> tuple[int, np.ndarray]:
        """(position, writable view) of the next ``nbytes`` of the file, for one batch. The
        caller fills the view with whole records and then calls ``commit``."""
        assert self.writable and not self.closed_for_append
        pos = self.size
        if pos + nbytes > self.capacity:
            raise StorageError(f"{self.path}: batch of {nbytes} bytes does not fit at {pos}")
        if pos + nbytes > self._allocated:
            self._reserve(pos + nbytes)
        return pos, self._data[pos : pos + nbytes]

    def fill_ids(self, dst: np.ndarray, positions: np.ndarray, uniform: bool, stride: int,
                 msg_ids: np.ndarray) -> None:
        """Write the id field of every record of a batch laid out in ``dst``."""
        count = len(positions)
        if uniform:  # the strided big-endian view swaps bytes as it assigns: one call
            np.ndarray((count,), dtype=">i8", buffer=dst, offset=8, strides=(stride,))[:] = msg_ids
        else:
            ids_be = np.asarray(msg_ids, dtype=">i8")
            dst[positions[:, None] + 8 + _ID_RANGE] = ids_be.view(np.uint8).reshape(count, 8)

    def append_one(self, data, msg_id: int, flag: int, crc: int) -> int:
        """Append one record, without numpy on the way (the synchronous put path); returns its
        position. Same files, same checks as ``reserve`` + ``commit``."""
        size = HEADER + len(data)
        pos, dst = self.reserve(size)
        view = self._view
        if view is None or len(view) != len(self._data):
            view = self._view = memoryview(self._data)
        _RECORD_HEADER.pack_into(view, pos, len(data), crc, msg_id, flag)
        view[pos + HEADER : pos + size] = data
        self.index.append_one(pos, message.header_check(msg_id, flag))
        self.sums.reserve(1)[0] = (pos + size, self.index.count, _hash(view[pos : pos + size]))
        self.sums.publish(1)
        if self._verified_prefix == pos:
            self._verified_prefix = pos + size
        self.size = pos + size
        self._mark_verified(self.sums.count)
        if self.size + PREFAULT_AHEAD_BYTES > self._populated:
            self._prefault_ahead()
        return pos

    def commit(self, pos: int, dst: np.ndarray, positions: np.ndarray, msg_ids: np.ndarray,
               flags) -> None:
        """Index and checksum the batch just written at ``pos``; it then counts as appended
        (it becomes visible to readers when the log publishes the new end)."""
        self.index.append(positions, message.header_checks(msg_ids, flags), base=pos)
        nbytes = len(dst)
        self.sums.reserve(1)[0] = (pos + nbytes, self.index.count, _hash(dst))  # what is mapped
        self.sums.publish(1)
        if self._verified_prefix == pos:
            self._verified_prefix = pos + nbytes
        self.size = pos + nbytes
        self._mark_verified(self.sums.count)
        if self.size + PREFAULT_AHEAD_BYTES > self._populated:
            self._prefault_ahead()

    def _prefault_ahead(self) -> None:
        start = max(self._populated, self.size // PAGE_BYTES * PAGE_BYTES)
        stop = min(self._allocated, round_up(self.size + 2 * PREFAULT_AHEAD_BYTES, PAGE_BYTES))
        if stop > start:
            PREFAULTER.request(self._data, start, stop, self._still_appending)
            self._populated = stop

    def populate_now(self, nbytes: int) -> int:
        """Allocate and populate the next ``nbytes`` of the file now, in this thread (what the
        prefault thread does ahead of the writer, done before a benchmark times the writer:
        on a VM whose host backs guest memory lazily the first touch of a page costs more than
        the append). Returns the bytes populated."""
        stop = min(self.capacity, round_up(self.size + nbytes, PAGE_BYTES))
        self._reserve(stop)
        start = self.size - self.size % PAGE_BYTES
        if stop <= start or not populate_now(self._data, start, stop):
            return 0
        self._populated = max(self._populated, stop)
        return stop - start

    def _still_appending(self) -> bool:
        return not self.closed_for_append

    def _mark_verified(self, batch_count: int) -> None:
        if len(self._verified) < batch_count:
            grown = np.zeros(max(batch_count, 2 * len(self._verified), 64), dtype=bool)
            grown[: len(self._verified)] = self._verified
            self._verified = grown
        self._verified[batch_count - 1] = True

    # ---- flushing and closing --------------------------------------------------------------

    def flush(self) -> None:
        """fdatasync data and sidecars: the kernel writes only the pages dirtied since the last
        flush, i.e. the range appended since then. Releases the GIL (unlike mmap.flush)."""
        os.fdatasync(self.fd)
        self.index.flush()
        self.sums.flush()

    def seal(self, flushed: bool = False) -> None:
        """Stop appending: flush (unless the caller just did), then cut the file to exactly its
        records (MetaQ's layout)."""
        if not self.writable or self.closed_for_append:
            return
        if not flushed:
            self.flush()
        os.ftruncate(self.fd, self.size)
        self.capacity = self.file_bytes = self._allocated = self.size
        self._data = map_fd(self.fd, self.size, True) if self.size else None
        self._view = None  # it was of the old, longer mapping
        self.closed_for_append = True

    def close(self) -> None:
        if self.fd < 0:
            return
        if self.writable:
            self.seal()
        for table in (self.index, self.sums):
            if table is not None:
                table.close(shrink=self.writable)
        self._data = self._view = None
        os.close(self.fd)
        self.fd = -1

    def _release(self) -> None:
        """Close whatever a failed ``__init__`` had opened, without flushing or cutting."""
        for table in (getattr(self, "index", None), getattr(self, "sums", None)):
            if table is not None:
                table.close(shrink=False)
        self._data = self._view = None
        os.close(self.fd)
        self.fd = -1

    def cut_back(self, end: int) -> int:
        """Forget the records from ``end`` (a batch end) on: zeroed, out of the index and the
        checksum table. Returns the bytes dropped. For records never acknowledged."""
        dropped = max(0, self.size - end)
        if dropped:
            self._data[end : self.size] = 0
        self.index.set_count(search(self.index.position_array(), end))
        self.sums.set_count(search(self.sums.entries()["end"], end, side="right"))
        self.size = end
        self._verified = self._verified[: self.sums.count]
        return dropped

    def rewrite(self, start: int, stop: int) -> None:
        """Write ``[start, stop)`` again through the mapping, so that its pages are dirty and the
        next flush writes them (a failed write-back leaves them clean in the page cache)."""
        for at in range(start, stop, REWRITE_CHUNK_BYTES):
            view = self._data[at : min(stop, at + REWRITE_CHUNK_BYTES)]
            view[:] = view.copy()
        for table in (self.index.positions, self.index.checks, self.sums):  # their entries
            table.rewrite(REWRITE_CHUNK_BYTES)  # after ``start`` met the same failing disk

    def grow(self, capacity_bytes: int) -> None:
        """Let a writable segment take a batch larger than its capacity: the file is extended
        (sparse) and mapped again, in place (views of the old mapping stay valid). For an empty
        segment and a batch above maxSegmentSize, or a replica following a master's larger
        segment. If the mapping fails (EMFILE, ENOMEM) the segment stays as it was and a later
        call tries again."""
        assert not self.closed_for_append
        capacity = round_up(capacity_bytes, PAGE_BYTES)
        if capacity <= self.capacity:
            return
        if os.fstat(self.fd).st_size < capacity:
            os.ftruncate(self.fd, capacity)
        self._data = map_fd(self.fd, capacity, True)
        self._view = None
        self.capacity = self.file_bytes = capacity

    def delete_files(self) -> None:
        """Remove the sidecars (the caller removes or archives the data file)."""
        for path in (files.index_file(self.directory, self.start_offset),
                     files.checks_file(self.directory, self.start_offset),
                     files.sums_file(self.directory, self.start_offset)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    # ---- verification --------------------------------------------------------------------

    def first_bad_position(self, start: int, stop: int) -> int | None:
        """Verify (once) every batch overlapping ``[start, stop)``; the position of the first
        damaged record in the range, or None."""
        if stop <= start:
            return None
        if stop <= self._verified_prefix:
            pass
        elif self.sums is not None and self.sums.count:
            self._verify_batches(start, stop)
        else:
            self._verify_by_scan(stop)
        if not self._bad:
            return None
        bad = [p for p in self._bad if start <= p < stop]
        return min(bad) if bad else None


    def bad_detail(self, position: int) -> str:
        return self._bad.get(position, "unknown damage")

    def _verify_batches(self, start: int, stop: int) -> None:
        table = self.sums.entries()
        ends = table["end"]
        first = search(ends, start, side="right")
        last = min(search(ends, stop), len(ends) - 1)
        if len(self._verified) < len(ends):
            grown = np.zeros(len(ends), dtype=bool)
            grown[: len(self._verified)] = self._verified
            self._verified = grown
        for batch in range(first, last + 1):
            if self._verified[batch]:
                continue
            batch_start = int(ends[batch - 1]) if batch else 0
            batch_end = int(ends[batch])
            if batch_end > self.size or batch_end <= batch_start:
                break  # not published yet, or a stale entry past the records
            if _hash(self.data_view(batch_start, batch_end)) != int(table["hash"][batch]):
                first_record = int(table["end_record"][batch - 1]) if batch else 0
                self._locate_damage(batch_start, batch_end, first_record)
            self._verified[batch] = True
        self._advance_verified_prefix(ends)

    def _advance_verified_prefix(self, ends: np.ndarray) -> None:
        unverified = np.flatnonzero(~self._verified[: len(ends)])
        upto = int(unverified[0]) if len(unverified) else len(ends)
        self._verified_prefix = int(ends[upto - 1]) if upto else 0

    def _locate_damage(self, start: int, end: int, first_record: int) -> None:
        """A batch hash failed: find which records are damaged (every byte of each is covered
        by the length chain, the CRC and the id/flag check)."""
        found = check_records(self.data_view(0, end), start, end, self.index, first_record)
        if found:
            for position, detail in found:
                self._bad[position] = detail
                log.error("corrupt record in %s at position %d (offset %d): %s",
                          self.path, position, self.start_offset + position, detail)
        else:
            log.warning("%s: checksum entry of batch [%d, %d) was wrong, records are intact",
                        self.path, start, end)

    def _verify_by_scan(self, stop: int) -> None:
        """Segments written without sidecars (e.g. by MetaQ): check records one by one (CRC and
        lengths) up to ``stop``, once."""
        pos = self._scan_verified_end
        limit = min(stop, self.size)
        if limit <= pos:
            return
        data = self.data_view(0, self.size)
        while pos < limit:
            problem, size = record_problem(data, pos, self.size, None)
            if problem is not None:
                self._bad[pos] = problem
                log.error("corrupt record in %s at position %d (offset %d): %s",
                          self.path, pos, self.start_offset + pos, problem)
                if not size:  # no way to find the next record
                    pos = self.size
                    break
            pos += size
        self._scan_verified_end = pos

    def scrub(self) -> list[tuple[int, str]]:
        """Verify every batch (or record) of the segment now; the damaged records found."""
        self._verified[:] = False
        self._verified_prefix = 0
        self._scan_verified_end = 0
        self.first_bad_position(0, self.size)
        return sorted(self._bad.items())

    # ---- record positions ------------------------------------------------------------------

    def record_positions(self, start: int, stop: int, limit: int) -> tuple[np.ndarray, int]:
        """Records starting in ``[start, stop)`` and ending by ``limit`` (the readable end):
        (their positions, end of the last one)."""
        if self.index is not None and self.index.count:
            positions = self.index.position_array()
            lo = search(positions, start)
            hi = search(positions, min(stop, limit))
            found = positions[lo : hi + 1].astype(np.int64)  # one more: where the last ends
            if len(found) > hi - lo:
                end = int(found[-1])
                found = found[:-1]
                if end > limit:
                    end, found = self._end_of(found, limit)
            else:
                end, found = self._end_of(found, limit)
            return found, end
        found, end = message.scan_positions(self.data_view(0, limit), start, limit)
        return found, end

    def _end_of(self, positions: np.ndarray, limit: int) -> tuple[int, np.ndarray]:
        """End of the last record of ``positions`` (read from its header), dropping it if it
        does not end by ``limit``."""
        while len(positions):
            last = int(positions[-1])
            length = int(self.data_view(last, last + 4).view(">i4")[0])
            if last + HEADER + length <= limit:
                return last + HEADER + length, positions
            positions = positions[:-1]
        return 0, positions

    def containing_record(self, position: int) -> int:
        """Start of the record that contains byte ``position`` (MetaQ's ``offset`` answers the
        segment start instead; this is for our getm extension)."""
        if self.index is not None and self.index.count:
            positions = self.index.position_array()
            i = search(positions, position, side="right") - 1
            return int(positions[max(i, 0)])
        found, _ = message.scan_positions(self.data_view(0, self.size), 0, self.size)
        i = search(found, position, side="right") - 1
        return int(found[max(i, 0)]) if len(found) else 0

    # ---- recovery (owner only) ------------------------------------------------------------

    def recover(self, trusted_end: int) -> int:
        """Find where this segment's records really end; truncate there. Returns bytes dropped.

        Everything before ``trusted_end`` (the recovery point) is taken as is. After it, batches
        are verified by hash; from the first bad or missing one, records are checked one by one
        (length, CRC, id/flag check where the index has one) up to the first bad record. The
        index and checksum tables are cut to match and rebuilt for re-scanned records.
        """
        assert self.writable
        file_end = self.file_bytes
        data = self.data_view(0, file_end) if file_end else np.zeros(0, dtype=np.uint8)
        sums = self.sums.entries()
        index_count = self.index.count
        # hashed: batches recovery has verified (those before trusted_end are trusted only)
        good_batches, good_end, good_records, hashed = good_batch_prefix(
            data, sums, file_end, index_count, trusted_end)
        scanned = scan_valid_records(data, good_end, file_end, self.index, good_records)
        end = good_end
        new_entries = []
        if len(scanned):
            positions, checks, end = scanned
            new_entries = (positions, checks)
        dropped = self._dropped_bytes(data, end, file_end)
        self.index.set_count(good_records)
        self.sums.set_count(good_batches)
        if new_entries:
            positions, checks = new_entries
            self.index.append(positions, checks)
            self._append_rebuilt_sums(positions, end, good_records)
        if dropped:
            # Zero what was dropped so that a later recovery can never revive stale records
            # that a shorter new batch did not overwrite.
            data[end : end + dropped] = 0
        self.size = end
        self._allocated = max(self._allocated, end)
        self._verified = np.zeros(self.sums.count, dtype=bool)
        self._verified[hashed] = True
        self._verified[good_batches:] = True  # re-scanned and re-hashed just now
        self._advance_verified_prefix(self.sums.entries()["end"])
        return dropped

    def _dropped_bytes(self, data, end: int, file_end: int) -> int:
        """Bytes after ``end`` that held something (zeroed preallocated space does not count).
        Only the allocated run after ``end`` is looked at (SEEK_HOLE), not a sparse gigabyte."""
        stop = file_end
        try:
            stop = min(file_end, os.lseek(self.fd, end, os.SEEK_HOLE))
        except OSError:
            pass
        last = last_nonzero(data, end, stop)
        return last + 1 - end if last >= end else 0

    def _append_rebuilt_sums(self, positions: np.ndarray, end: int, first_record: int) -> None:
        """Checksum entries for re-scanned records, a batch per ~1 MiB."""
        starts = positions.astype(np.int64)
        bounds = []
        batch_start = int(starts[0])
        for i, position in enumerate(starts.tolist()):
            if position - batch_start >= REBUILD_BATCH_BYTES:
                bounds.append((position, first_record + i))
                batch_start = position
        bounds.append((end, first_record + len(starts)))
        prev = int(starts[0])
        rows = []
        for batch_end, end_record in bounds:
            rows.append((batch_end, end_record, _hash(self.data_view(prev, batch_end))))
            prev = batch_end
        self.sums.append(np.array(rows, dtype=SUMS_DTYPE))
