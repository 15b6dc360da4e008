"""PartitionLog: one partition's ordered segments — append, read, flush policy, roll, recovery.

Imports: numpy, metaq_fast.message / errors / limits and the storage modules. Nothing of the
network, the protocol or ZooKeeper.

Two classes share the read path:

* ``PartitionLog`` is the single writer of a partition (the worker that owns it). It appends
  whole batches, rolls segments, applies the flush policy, recovers at open and publishes the
  visible end in ``partition.state``.
* ``PartitionReader`` is any other process's read-only view of the same directory: it maps the
  segment files, learns new segments from the directory, and serves reads up to the visible end
  the owner published. No routing hop is needed for ``get``.

Acknowledgement promises (what the broker may say once ``append`` has returned):

* ``unflushThreshold > 0`` (normal mode): the batch is in the shared mapping, i.e. in the page
  cache. A killed process loses nothing of it; a lost machine may lose what was appended since
  the last flush, at most ``unflushThreshold`` messages or ``unflushInterval`` ms of appends (plus
  the one flush in progress). Records are visible to readers at once.
* ``unflushThreshold <= 0`` (group commit): the broker acknowledges only after ``flush()`` has
  returned; records become visible to readers at the same moment. A lost machine loses nothing
  acknowledged. Appends arriving during a flush are flushed together by the next one.

A failed fdatasync or seal *fails* the log for good (Linux may drop the pages it could not write
and report success to the next fsync): no more flushes, appends refused (``PartitionOfflineError``),
closed without moving the recovery point, and ``flush_failed`` set in partition.state, so the
next open deals with all after the last good flush (storage/faults.py): in group commit nothing
there was acknowledged and it is dropped; otherwise it is written again and flushed before the
log takes appends. A full disk only fails the append that found it (``StorageError``).
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from .. import message
from ..errors import (
    ChecksumError,
    CorruptRecordError,
    InvalidArgumentError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    StorageError,
)
from ..limits import BATCH_BYTES_MAX_DEFAULT
from . import files
from .ids import MessageIdAllocator
from .faults import (PartitionOfflineError, create_segment, drop_unfinished_entries,
                     recover_after_failed_flush, release_without_seal)
from .mapped import search
from .replica import ReplicaAppends
from .segment import HEADER, Segment
from .results import (AppendResult, FlushPolicy, NotRecordBoundaryError, ReadSlice,
                      RecordSlice)
from .state import FAILED_IN_GROUP_COMMIT, FAILED_WITH_THRESHOLD, PartitionState

log = logging.getLogger(__name__)


class _LogView:
    """Read path shared by the owner and readers; subclasses keep ``self._segments`` current."""

    directory: Path
    state: PartitionState
    _segments: list[Segment | None]
    _starts: list[int]

    # -- bounds (subclasses override where they know better) --

    @property
    def first_offset(self) -> int:
        return self._starts[0] if self._starts else 0

    @property
    def visible_end(self) -> int:
        return self.state.visible_end

    def _segment_index(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset) - 1

    def _open_segment(self, i: int) -> Segment:
        raise NotImplementedError

    def _segment_stop(self, i: int, end: int) -> int:
        """Readable bytes of segment ``i`` given the visible end."""
        start = self._starts[i]
        if i + 1 < len(self._starts):
            return min(self._starts[i + 1], end) - start
        return end - start

    def _locate(self, offset: int) -> tuple[Segment, int, int]:
        first, end = self.first_offset, self.visible_end
        if offset < first or offset >= end:
            self._refresh()
            first, end = self.first_offset, self.visible_end
            if offset < first or offset >= end:
                raise OffsetOutOfRangeError(offset, first, end)
        i = self._segment_index(offset)
        segment = self._open_segment(i)
        return segment, offset - segment.start_offset, self._segment_stop(i, end)

    def _refresh(self) -> None:
        """Catch up with changes made by another process (readers only)."""

    # -- reads --

    def read(self, offset: int, max_bytes: int) -> ReadSlice:
        """Up to ``max_bytes`` stored bytes from ``offset`` (MetaQ ``get``: one segment, the last
        record may be cut, no boundary check). Raises ``OffsetOutOfRangeError`` outside
        ``[first_offset, visible_end)`` and ``CorruptRecordError`` at a damaged record."""
        if max_bytes <= 0:
            raise InvalidArgumentError(f"invalid max size:{max_bytes}")
        segment, position, seg_stop = self._locate(offset)
        stop = min(position + max_bytes, seg_stop)
        stop = self._cut_at_damage(segment, position, stop)
        return ReadSlice(offset, segment.data_view(position, stop), segment.fd, position, stop - position)

    def read_records(self, offset: int, max_bytes: int) -> RecordSlice:
        """Whole records from ``offset`` totalling at most ``max_bytes``, with their lengths."""
        if max_bytes <= 0:
            raise InvalidArgumentError(f"invalid max size:{max_bytes}")
        segment, position, seg_stop = self._locate(offset)
        positions, last_end = segment.record_positions(position, position + max_bytes, seg_stop)
        if not len(positions) or int(positions[0]) != position:
            start = segment.containing_record(position)
            raise NotRecordBoundaryError(offset, segment.start_offset + start)
        ends = np.empty_like(positions)
        ends[:-1] = positions[1:]
        ends[-1] = last_end
        count = search(ends, position + max_bytes, side="right")
        stop = int(ends[count - 1]) if count else position
        stop = self._cut_at_damage(segment, position, stop)
        if count and stop < int(ends[count - 1]):
            count = search(ends, stop, side="right")
        lengths = (ends[:count] - positions[:count] - HEADER).astype(np.int64)
        return RecordSlice(offset, segment.data_view(position, stop), segment.fd, position,
                           stop - position, lengths, int(ends[0] - positions[0]))

    def _cut_at_damage(self, segment: Segment, position: int, stop: int) -> int:
        bad = segment.first_bad_position(position, stop)
        if bad is None:
            return stop
        if bad == position:
            raise CorruptRecordError(str(segment.path), position, segment.bad_detail(position))
        return bad

    def nearest_offset(self, offset: int) -> int:
        """MetaQ's ``offset`` answer: the first segment's start before the log, the start of the
        segment holding ``offset`` inside it, the visible end after it."""
        self._refresh()
        first, end = self.first_offset, self.visible_end
        if offset < first:
            return first
        if offset >= end:
            return end
        return self._starts[self._segment_index(offset)]

    def segment_starts(self) -> list[int]:
        self._refresh()
        return list(self._starts)

    def message_count(self) -> int:
        """Records stored (from the record index of every segment; exact, unlike MetaQ's)."""
        self._refresh()
        end = self.visible_end
        total = 0
        for i in range(len(self._starts)):
            segment = self._open_segment(i)
            if segment.index is None:
                positions, _ = segment.record_positions(0, segment.size, segment.size)
                total += len(positions)
            elif i == len(self._starts) - 1:
                positions = segment.index.position_array()
                total += search(positions, end - segment.start_offset)
            else:
                total += segment.record_count
        return total


class PartitionLog(_LogView, ReplicaAppends):
    """The writer of one partition (see module docstring for what an append promises)."""

    def __init__(self, data_path: Path | str, topic: str, partition: int, *,
                 segment_bytes_max: int, flush_policy: FlushPolicy,
                 ids: MessageIdAllocator, batch_bytes_max: int = BATCH_BYTES_MAX_DEFAULT,
                 clock_s=time.monotonic):
        if segment_bytes_max <= 0:
            raise InvalidArgumentError(f"segment_bytes_max must be > 0, got {segment_bytes_max}")
        self.topic = topic
        self.partition = partition
        self.directory = files.partition_dir(data_path, topic, partition)
        self.segment_bytes_max = segment_bytes_max
        self.flush_policy = flush_policy
        self.batch_bytes_max = batch_bytes_max
        self.ids = ids
        self._clock_s = clock_s
        self._flush_lock = threading.Lock()
        self._appended_messages = 0  # written only by the appending thread
        self._flushed_messages = 0  # written only under _flush_lock
        self._last_flush_s = clock_s()
        self.recovered_bytes_dropped = 0
        self.failed: str | None = None  # why the log takes no more appends (module docstring)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.state = PartitionState(self.directory / files.STATE_NAME, writable=True)
        self.state.owner_pid = os.getpid()
        self._segments = []
        self._starts = []
        self._open()

    # ---- open and recover ------------------------------------------------------------------

    def _capacity(self, nbytes: int = 0) -> int:
        return max(self.segment_bytes_max, nbytes)

    def _open(self) -> None:
        for stale in self.directory.glob("*" + files.TMP_SUFFIX):
            log.warning("removing unfinished file %s", stale)
            stale.unlink()
        starts = files.list_segment_starts(self.directory)
        if not starts:
            self._starts = [0]
            self._segments = [self._create_segment(0)]
            # the new names (partition directory, first segment) durable before any ack
            files.fsync_dir(self.directory)
            files.fsync_dir(self.directory.parent)
            self._publish_bounds(0)
            self.state.recovery_point = 0
            if self.state.flush_failed:
                self.state.flush_failed = 0  # nothing of that run is left to deal with
            return
        files.check_contiguous(self.directory, starts)
        self._starts = starts
        self._segments = [None] * len(starts)
        last_start = starts[-1]
        recovery_point = self.state.recovery_point
        trusted = 0 if recovery_point is None else max(0, recovery_point - last_start)
        last = Segment(self.directory, last_start, writable=True,
                       capacity_bytes=self._capacity())
        began = time.monotonic()
        dropped = last.recover(trusted)
        self._segments[-1] = last
        if dropped:
            log.warning("recovered %s-%d: dropped %d bytes of torn or corrupt tail at offset %d "
                        "(file %s)", self.topic, self.partition, dropped, last.end_offset, last.path)
        failed_in = self.state.flush_failed
        if failed_in:
            known = recovery_point is not None and recovery_point >= last_start
            dropped += recover_after_failed_flush(last, trusted if known else None,
                                                  failed_in == FAILED_IN_GROUP_COMMIT)
        self.recovered_bytes_dropped = dropped
        log.info("opened %s-%d: %d segment(s), offsets [%d, %d), recovery scanned from offset "
                 "%d in %.1f ms", self.topic, self.partition, len(starts), starts[0],
                 last.end_offset, last_start + trusted, (time.monotonic() - began) * 1e3)
        self._observe_last_id(last)
        try:
            last.flush()
        except OSError as exc:  # the failed flush of the last run, again: stay offline; a tail
            self.fail(f"fdatasync of segment {last.path} failed at open: {exc}",  # of unknown
                      FAILED_WITH_THRESHOLD)  # origin (no mark: a crash) is kept, never cut
            self._publish_bounds(last.end_offset)
            return
        self.state.recovery_point = last.end_offset
        if failed_in:
            self.state.flush_failed = 0  # msynced with the recovery point beside it
        self._publish_bounds(last.end_offset)
        if last.size >= self.segment_bytes_max:
            self._try_roll()  # a full disk must not stop the partition from opening

    def _observe_last_id(self, segment: Segment) -> None:
        if not segment.record_count:
            return
        position = segment.index.position(segment.record_count - 1)
        header = segment.data_view(position, position + HEADER).view(message.HEADER_DTYPE)
        self.ids.observe(int(header["msg_id"][0]))

    def _publish_bounds(self, end: int) -> None:
        self._visible_end = end
        self.state.visible_end = end
        self.state.first_offset = self._starts[0]

    @property
    def visible_end(self) -> int:
        return self._visible_end

    @property
    def end_offset(self) -> int:
        """Offset after the last appended record (visible or not yet, in group commit)."""
        return self.active.end_offset

    @property
    def active(self) -> Segment:
        return self._segments[-1]

    def _open_segment(self, i: int) -> Segment:
        segment = self._segments[i]
        if segment is None:
            segment = Segment(self.directory, self._starts[i], writable=False)
            self._segments[i] = segment
        return segment

    # ---- append --------------------------------------------------------------------------

    def append_datas(self, datas, flags=0, crcs: np.ndarray | None = None,
                     lengths: np.ndarray | None = None) -> AppendResult:
        """Append one record per data block (MetaQ ``put`` bodies); CRCs computed if not given."""
        count = len(datas)
        if count == 0:
            raise InvalidArgumentError("empty batch")
        if lengths is None:
            lengths = message.lengths_of(datas)
        if crcs is None:
            crcs = message.crc32_many(datas)
        positions, nbytes, uniform = message.layout(lengths)
        self._check_append(nbytes)
        msg_ids = self.ids.allocate(count)
        segment, pos, dst = self._reserve(nbytes)
        message.lay_out_records(dst, datas, positions, uniform, lengths, crcs, msg_ids, flags)
        return self._commit(segment, pos, dst, positions, msg_ids, flags)

    def append_one(self, data, flag: int = 0, crc: int | None = None) -> tuple[int, int, int]:
        """Append one message (a synchronous put): (offset, msg_id, end offset). Plain Python
        all the way: numpy's per-call overhead would cost more than the work for one record."""
        if crc is None:
            crc = message.crc32(data)
        size = HEADER + len(data)
        self._check_append(size)
        active = self.active
        if (active.size and active.size + size > self.segment_bytes_max) or not active.can_take(size):
            active = self._roll(size)
        msg_id = self.ids.allocate_one()
        try:
            position = active.append_one(data, msg_id, flag, crc)
        except Exception:
            drop_unfinished_entries(active)
            raise
        offset = active.start_offset + position
        end = offset + size
        self._appended_messages += 1
        if not self.flush_policy.group_commit:
            self._visible_end = end
            self.state.visible_end = end
        if active.size >= self.segment_bytes_max:
            self._try_roll()
        return offset, msg_id, end

    def append_message_set(self, records, lengths: np.ndarray, *, verify_crcs: bool) -> AppendResult:
        """Append a message set the producer encoded (ids are assigned here).

        ``lengths`` are the data lengths the request's index claims; they are checked against
        every record's length field (vectorised). ``verify_crcs`` checks every record's CRC too
        (needed when no batch checksum vouched for the transfer).
        """
        lengths = np.asarray(lengths)
        count = len(lengths)
        if count == 0:
            raise InvalidArgumentError("empty message set")
        src = np.frombuffer(records, dtype=np.uint8)
        first = int(lengths[0])
        stride = first + HEADER
        if first >= 0 and count * stride == len(src) and not np.count_nonzero(lengths != first):
            # equal sizes (the usual batch): two array calls instead of min, max and a cumsum
            positions, nbytes, uniform = np.arange(0, len(src), stride, dtype=np.int64), len(src), True
        elif int((lengths := lengths.astype(np.int64)).min()) < 0:
            raise InvalidArgumentError("negative record length in the index")
        else:
            positions, nbytes, uniform = message.layout(lengths)
        if nbytes != len(src):
            raise InvalidArgumentError(f"index describes {nbytes} bytes, message set has {len(src)}")
        self._check_append(nbytes)
        if uniform:
            headers = message.strided_headers(src, count, stride)
        else:
            headers = message.gather_headers(src, positions)
        wrong = headers["length"] != (first if uniform else lengths)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise InvalidArgumentError(
                f"record {i}: length field {int(headers['length'][i])} but index says {int(lengths[i])}")
        if verify_crcs:
            view = memoryview(src)
            starts = (positions + HEADER).tolist()
            ends = (positions + HEADER + lengths.astype(np.int64, copy=False)).tolist()
            actual = message.crc32_many(list(map(view.__getitem__, map(slice, starts, ends))))
            bad = np.flatnonzero(actual != headers["crc"])
            if len(bad):
                raise ChecksumError(f"record {int(bad[0])} of the message set fails its checksum")
        flags = headers["flag"]
        msg_ids = self.ids.allocate(count)
        segment, pos, dst = self._reserve(nbytes)
        dst[:] = src
        segment.fill_ids(dst, positions, uniform, stride, msg_ids)
        return self._commit(segment, pos, dst, positions, msg_ids, flags)

    def _check_append(self, nbytes: int) -> None:
        """Refuse a batch larger than the limit, and any batch once the log has failed."""
        if nbytes > self.batch_bytes_max:
            raise MessageTooLargeError(
                f"batch of {nbytes} bytes exceeds the limit of {self.batch_bytes_max}", fatal=False)
        if self.failed is not None:
            raise PartitionOfflineError(self.failed)

    def fail(self, reason: str, mode: int | None = None) -> PartitionOfflineError:
        """Take the log out of service for good (module docstring); the first reason stays.
        Marked in partition.state with the flush mode the tail after the recovery point was
        written in (``mode``; default: this run's), for the next open. A mark already there
        stays: that tail is older than this run."""
        if self.failed is None:
            self.failed = reason  # the broker logs it, once (broker/storage_faults.py)
            if not self.state.flush_failed:
                if mode is None:
                    mode = (FAILED_IN_GROUP_COMMIT if self.flush_policy.group_commit
                            else FAILED_WITH_THRESHOLD)
                self.state.flush_failed = mode
        return PartitionOfflineError(self.failed)


    def _reserve(self, nbytes: int) -> tuple[Segment, int, np.ndarray]:
        """Room for a batch in the active segment, rolling first if it would pass the limit."""
        active = self.active
        if active.size and active.size + nbytes > self.segment_bytes_max:
            active = self._roll(nbytes)
        elif not active.can_take(nbytes):
            active = self._roll(nbytes)
        pos, dst = active.reserve(nbytes)
        return active, pos, dst

    def _commit(self, segment: Segment, pos: int, dst: np.ndarray, positions: np.ndarray,
                msg_ids: np.ndarray, flags, roll: bool = True) -> AppendResult:
        try:
            segment.commit(pos, dst, positions, msg_ids, flags)
        except Exception:  # e.g. a sidecar that could not grow on a full disk
            drop_unfinished_entries(segment)
            raise
        first = segment.start_offset + pos
        end = first + len(dst)
        self._appended_messages += len(positions)
        if not self.flush_policy.group_commit:
            self._visible_end = end
            self.state.visible_end = end
        if roll and segment.size >= self.segment_bytes_max:  # a replica follows its master's
            self._try_roll()
        return AppendResult(first, end, msg_ids, positions)

    def _roll(self, next_batch_bytes: int = 0) -> Segment:
        """Seal the active segment (flushed, cut to size) and start the next one at its end. A
        failed seal fails the log; a failed creation (full disk) is tried again next time."""
        with self._flush_lock:
            if self.failed is not None:  # a flush failed while this append waited for the lock
                raise PartitionOfflineError(self.failed)
            old = self.active
            if old.size == 0:  # an empty segment too small for the batch: make it bigger, in
                old.grow(self._capacity(next_batch_bytes))  # place (a failure leaves it as it was)
                return old
            try:
                old.flush()  # only a failed flush fails the log
            except OSError as exc:
                raise self.fail(f"sealing segment {old.path} failed: {exc}") from exc
            # Cut and remapped (EMFILE or ENOMEM there is tried again by the next roll); returns
            # at once if a failed creation left it sealed.
            old.seal(flushed=True)
            self._flushed_messages = self._appended_messages
            self.state.recovery_point = old.end_offset
            if self.flush_policy.group_commit:  # durable now, whatever happens to the next one
                self._visible_end = old.end_offset
                self.state.visible_end = old.end_offset
            new = self._create_segment(old.end_offset, next_batch_bytes)
            self._segments.append(new)
            self._starts.append(new.start_offset)
            try:
                files.fsync_dir(self.directory)
            except OSError as exc:
                raise self.fail(f"syncing directory {self.directory} failed: {exc}") from exc
            log.debug("rolled %s-%d: new segment %s", self.topic, self.partition, new.path)
            return new

    def _try_roll(self) -> None:
        """Roll a full segment if possible; the append that filled it stands (reply due)."""
        try:
            self._roll()
        except (StorageError, OSError) as exc:
            log.debug("rolling %s-%d after an append failed: %s", self.topic, self.partition, exc)

    def _create_segment(self, start_offset: int, next_batch_bytes: int = 0) -> Segment:
        return create_segment(self.directory, start_offset, self._capacity(next_batch_bytes))

    # ---- flush -----------------------------------------------------------------------------

    @property
    def unflushed_messages(self) -> int:
        return self._appended_messages - self._flushed_messages

    @property
    def flushed_offset(self) -> int:
        point = self.state.recovery_point
        return point if point is not None else self._starts[-1]

    def flush_due(self) -> bool:
        """MetaQ's rule: more than ``unflushThreshold`` messages since the last flush, or
        ``unflushInterval`` elapsed with something unflushed (group commit: anything)."""
        unflushed = self.unflushed_messages
        if unflushed <= 0 or self.failed is not None:
            return False
        policy = self.flush_policy
        if policy.group_commit or unflushed > policy.threshold_messages:
            return True
        return (self._clock_s() - self._last_flush_s) * 1000.0 >= policy.interval_ms

    def flush(self) -> int:
        """Make everything appended so far durable (safe to call from another thread than the
        appender). Returns the offset now durable. Raises ``PartitionOfflineError`` if this
        or an earlier flush failed: no later flush may vouch for pages an earlier one lost."""
        with self._flush_lock:
            if self.failed is not None:
                raise PartitionOfflineError(self.failed)
            active = self.active
            end = active.end_offset
            appended = self._appended_messages
            if appended != self._flushed_messages or self.state.recovery_point != end:
                try:
                    active.flush()
                except OSError as exc:
                    raise self.fail(f"fdatasync of segment {active.path} failed: {exc}") from exc
                self.state.recovery_point = end
            self._flushed_messages = appended
            self._last_flush_s = self._clock_s()
            if self.flush_policy.group_commit and end > self._visible_end:
                self._visible_end = end
                self.state.visible_end = end
            return end

    # ---- maintenance --------------------------------------------------------------------

    def scrub(self) -> list[CorruptRecordError]:
        """Verify every stored batch now; the damaged records found (also logged)."""
        found = []
        for i in range(len(self._starts)):
            segment = self._open_segment(i)
            for position, detail in segment.scrub():
                found.append(CorruptRecordError(str(segment.path), position, detail))
        return found

    def closed_segments(self) -> list[tuple[int, Path]]:
        """(start offset, data file) of every segment but the active one, oldest first."""
        return [(start, files.data_file(self.directory, start)) for start in self._starts[:-1]]

    def drop_oldest_segment(self) -> Segment:
        """Forget the oldest closed segment (retention decides what happens to its file)."""
        if len(self._starts) < 2:
            raise StorageError("the active segment is never removed")
        segment = self._open_segment(0)
        self._segments.pop(0)
        self._starts.pop(0)
        self.state.first_offset = self._starts[0]
        segment.close()
        segment.delete_files()
        return segment

    def close(self) -> None:
        """Flush, cut the active file to its records, and release everything (a failed log:
        release only, the recovery point stays at the last good flush)."""
        with self._flush_lock:
            if not self._segments:
                return
            if self.failed is not None:
                release_without_seal(self._segments)
            else:
                end = self.active.end_offset
                for segment in self._segments:
                    if segment is not None:
                        segment.close()  # the active one is flushed and cut to size here
                self.state.recovery_point = end
                self.state.visible_end = end
                self.state.flush()
            self._segments = []
            self.state.owner_pid = 0
            self.state.close()


class PartitionReader(_LogView):
    """A read-only view of a partition another process owns (see module docstring)."""

    def __init__(self, data_path: Path | str, topic: str, partition: int):
        self.topic = topic
        self.partition = partition
        self.directory = files.partition_dir(data_path, topic, partition)
        state_path = self.directory / files.STATE_NAME
        if not state_path.exists():
            raise FileNotFoundError(f"no partition at {self.directory}")
        self.state = PartitionState(state_path, writable=False)
        self._starts = []
        self._segments = []
        self._truncations = self.state.truncations
        self._refresh()

    @property
    def first_offset(self) -> int:
        return self.state.first_offset

    def _refresh(self) -> None:
        if self.state.truncations != self._truncations:  # the owner cut the log back: a file
            self._truncations = self.state.truncations  # we map may be gone or made anew
            for segment in self._segments:
                if segment is not None:
                    segment.close()
            self._segments, self._starts = [], []
        starts = files.list_segment_starts(self.directory)
        first = self.state.first_offset
        starts = [s for s in starts if s >= first] or starts[-1:]
        if starts == self._starts:
            return
        old = dict(zip(self._starts, self._segments))
        self._segments = [old.get(s) for s in starts]
        for start, segment in old.items():
            if start not in starts and segment is not None:
                segment.close()
        self._starts = starts

    def _locate(self, offset: int):
        end = self.visible_end
        if self.state.truncations != self._truncations:
            self._refresh()
        elif self._starts and end > self._starts[-1] and offset >= self._starts[-1]:
            # the owner may have rolled since we listed the directory
            self._refresh()
        elif offset < self.first_offset or not self._starts or offset < self._starts[0]:
            self._refresh()
        return super()._locate(offset)

    def _open_segment(self, i: int) -> Segment:
        segment = self._segments[i]
        if segment is None:
            segment = Segment(self.directory, self._starts[i], writable=False)
            self._segments[i] = segment
        elif segment.sums is not None:
            segment.sums.refresh()
            segment.index.refresh()
        if i == len(self._starts) - 1:
            segment.size = self.visible_end - segment.start_offset  # the owner's published end
        elif segment.size > self._starts[i + 1] - self._starts[i]:
            segment.size = self._starts[i + 1] - self._starts[i]
        return segment

    def close(self) -> None:
        for segment in self._segments:
            if segment is not None:
                segment.close()
        self._segments = []
        self.state.close()
