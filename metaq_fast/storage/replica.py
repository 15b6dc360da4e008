"""What a partition log does as a replica of a master's partition: append the master's records
as they lie, follow its segment boundaries, and cut back to where it diverged.

Imports: numpy and metaq_fast.message / errors and the storage modules (no log.py: this is a
mixin of ``PartitionLog``, which imports it).

A slave's log is byte-identical to its master's: same records (message ids, flags, CRCs, data),
same offsets, and the same segment files. For the last, a replicated chunk never spans two of
the master's segments and carries the start of the one it came from (``segment_start``): when
that is past the active segment, the slave seals the active one (which must end exactly there)
and starts the next at the same offset. A slave never rolls by its own size rule.

Checks: the chunk's transfer is vouched for by the xxh3 of the replication reply, and the
master verified its stored batches by their hashes when it read them; here the record length
chain is walked (a cut or garbled chunk is refused before anything is stored). CRCs are not
computed again.

Cutting back (``truncate_to``) drops whole segments after the cut and zeroes the tail of the
one it falls in; readers in other workers learn of it through ``partition.state``'s truncation
count. ``reset_to`` drops everything and starts empty at an offset (a partition whose records
the master no longer has: MetaQ's slave starts a missing partition where the master's log
starts).
"""

from __future__ import annotations

import bisect
import logging

import numpy as np

from .. import message
from ..errors import InvalidArgumentError, StorageError
from . import files
from .epochs import LeaderEpochs
from .faults import PartitionOfflineError
from .results import AppendResult
from .segment import Segment
from .verify import batch_hash

log = logging.getLogger("metaq_fast.storage.log")


class ReplicaAppends:
    """Mixin of ``PartitionLog`` (module docstring). Uses the log's segments, roll, commit and
    flush lock."""

    _epochs: LeaderEpochs | None = None

    @property
    def epochs(self) -> LeaderEpochs:
        """The partition's leader epochs (storage/epochs.py), read on first use. Entries that
        start past the log's end are dropped (Kafka's recovery does the same): the file is
        fsynced at each change, the records it names may not have been (a power loss with
        ``unflushThreshold > 0``)."""
        if self._epochs is None:
            epochs = LeaderEpochs(self.directory)
            epochs.truncate_from(self.end_offset + 1)
            self._epochs = epochs
        return self._epochs

    def segment_start_of(self, offset: int) -> int:
        """Start of the segment holding ``offset`` (of the last one at or past the end)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        return self._starts[max(i, 0)]

    # ---- appending -----------------------------------------------------------------------

    def append_replicated(self, offset: int, records, segment_start: int,
                          epoch: int = 0) -> AppendResult | None:
        """Append the master's whole records ``records`` (bytes as they lie, ids included) at
        ``offset``, the current end, from the master's segment starting at ``segment_start``,
        written in master ``epoch`` (0: none known). Returns None for an empty chunk (which may
        still roll to a new segment the master started)."""
        if self.failed is not None:
            raise PartitionOfflineError(self.failed)
        end = self.active.end_offset
        if offset != end:
            raise InvalidArgumentError(f"replicated records of {self.topic}-{self.partition} "
                                       f"start at {offset}, the log ends at {end}")
        active = self.active
        if segment_start > active.start_offset:
            if segment_start != end:
                raise StorageError(
                    f"{self.topic}-{self.partition}: the master's segment starts at "
                    f"{segment_start}, ours ends at {end}: segment boundaries differ")
            active = self._roll()
        elif segment_start < active.start_offset:
            if active.size == 0 and self._starts[-2:-1] == [segment_start]:
                active = self._unroll()  # we rolled by our size rule (at open), the master not
            else:
                raise StorageError(
                f"{self.topic}-{self.partition}: records at {offset} come from the master's "
                f"segment at {segment_start}, before our active one at {active.start_offset}")
        src = np.frombuffer(records, dtype=np.uint8)
        if not len(src):
            return None
        positions, whole = message.scan_positions(src)
        if whole != len(src) or not len(positions):
            raise InvalidArgumentError(
                f"replicated chunk of {len(src)} bytes for {self.topic}-{self.partition} ends "
                f"inside a record (whole records end at {whole})")
        headers = message.gather_headers(src, positions)
        msg_ids = np.ascontiguousarray(headers["msg_id"]).astype(np.int64)
        if epoch > 0:
            self.epochs.assign(epoch, offset)
        if not active.can_take(len(src)):
            active.grow(active.size + len(src))  # a master's segment larger than ours may be
        pos, dst = active.reserve(len(src))
        dst[:] = src
        self.ids.observe(int(msg_ids.max()))
        return self._commit(active, pos, dst, positions, msg_ids, headers["flag"], roll=False)

    def _unroll(self) -> Segment:
        """Delete the empty active segment and append to the one before it again."""
        with self._flush_lock:
            self._delete_segment(self._segments.pop(), self._starts.pop())
            previous = self._segments[-1]
            if previous is not None:
                previous.close()
            self._segments[-1] = Segment(self.directory, self._starts[-1], writable=True,
                                         capacity_bytes=self._capacity())
            files.fsync_dir(self.directory)
            return self._segments[-1]

    # ---- cutting back --------------------------------------------------------------------

    def truncate_to(self, offset: int) -> int:
        """Drop every record from ``offset`` (a record start) on; returns the bytes dropped.
        For a replica whose tail its master does not have: never acknowledged by this epoch."""
        with self._flush_lock:
            if self.failed is not None:
                raise PartitionOfflineError(self.failed)
            end = self.active.end_offset
            if offset >= end:  # no record to drop; an epoch begun here and left empty goes
                self.epochs.truncate_from(offset)
                return 0
            if offset < self._starts[0]:
                raise InvalidArgumentError(f"cannot cut {self.topic}-{self.partition} at "
                                           f"{offset}, before its first offset {self._starts[0]}")
            # The epochs first (a crash must not leave an entry past the end), then readers:
            # they stop at the lower end before any byte after it is zeroed or deleted.
            self.epochs.truncate_from(offset)
            self._publish_cut(offset)
            i = bisect.bisect_right(self._starts, offset) - 1
            for segment, start in list(zip(self._segments, self._starts))[i + 1:]:
                self._delete_segment(segment, start)
            kept = self._segments[i]
            if kept is None or not kept.writable or kept.closed_for_append:
                if kept is not None:
                    kept.close()
                kept = Segment(self.directory, self._starts[i], writable=True,
                               capacity_bytes=self._capacity())
            self._segments = self._segments[:i] + [kept]
            self._starts = self._starts[:i + 1]
            self._cut_segment(kept, offset - kept.start_offset)
            self._after_cut(offset)
            log.warning("%s-%d cut back from %d to %d (%d bytes): the master does not have them",
                        self.topic, self.partition, end, offset, end - offset)
            return end - offset

    def reset_to(self, offset: int) -> int:
        """Drop every record and start empty at ``offset``; returns the bytes dropped."""
        with self._flush_lock:
            if self.failed is not None:
                raise PartitionOfflineError(self.failed)
            dropped = self.active.end_offset - self._starts[0]
            self.epochs.truncate_from(0)  # no record left: the caller assigns the next epoch
            self._publish_cut(self._starts[0])
            for segment, start in list(zip(self._segments, self._starts)):
                self._delete_segment(segment, start)
            self._segments = [self._create_segment(offset)]
            self._starts = [offset]
            self._after_cut(offset)
            if dropped:
                log.warning("%s-%d reset to start at %d (%d bytes dropped)", self.topic,
                            self.partition, offset, dropped)
            return dropped

    def _delete_segment(self, segment: Segment | None, start: int) -> None:
        if segment is None:
            segment = Segment(self.directory, start, writable=False)
        segment._release()  # no seal: its records are being dropped
        segment.delete_files()
        files.data_file(self.directory, start).unlink(missing_ok=True)

    @staticmethod
    def _cut_segment(segment: Segment, position: int) -> None:
        """Cut ``segment`` at ``position`` (a record start), its index and batch sums with it;
        the records of a batch the cut goes through get a sum of their own."""
        segment.cut_back(position)
        sums = segment.sums.entries()
        covered = int(sums["end"][-1]) if len(sums) else 0
        if covered < position:
            row = np.array([(position, segment.index.count,
                             batch_hash(segment.data_view(covered, position)))], dtype=sums.dtype)
            segment.sums.append(row)
            segment._mark_verified(segment.sums.count)
        segment._bad = {p: why for p, why in segment._bad.items() if p < position}
        segment._scan_verified_end = min(segment._scan_verified_end, position)
        segment._advance_verified_prefix(segment.sums.entries()["end"])
        segment._allocated = max(segment._allocated, position)

    def _publish_cut(self, offset: int) -> None:
        """Before a cut at ``offset``: readers in other workers serve nothing past it, and drop
        their mappings (a file may be deleted and made again under the same name)."""
        self._visible_end = min(self._visible_end, offset)
        self.state.visible_end = self._visible_end
        self.state.count_truncation()

    def _after_cut(self, offset: int) -> None:
        """Bounds and recovery point after a cut at ``offset``."""
        self.active.flush()
        files.fsync_dir(self.directory)
        self._appended_messages = self._flushed_messages
        self._visible_end = offset
        self.state.visible_end = offset
        self.state.first_offset = self._starts[0]
        self.state.recovery_point = offset
        self.state.count_truncation()
        self.state.flush()
