"""A replica's log as a property (storage/replica.py, storage/epochs.py).

A master log takes random batches with tiny segments; a replica copies it in chunks of random
size the way the replication fetch does (whole records, never across the master's segments, the
segment start carried along). Its data files must be byte-identical to the master's, file for
file. Then the replica is cut back at a random record start and reopened: exactly the records
before the cut survive, recovery finds nothing to drop, and copying again from the master makes
the files identical again. A reader in another "process" (a PartitionReader) never serves
records from before the cut once the log was cut. And the leader-epoch file's answers.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from metaq_fast.errors import StorageError
from metaq_fast.message import MessageSet
from metaq_fast.storage import FlushPolicy, MessageIdAllocator, PartitionLog, PartitionReader
from metaq_fast.storage.epochs import LeaderEpochs

LAZY = FlushPolicy(10**9, 10**9)

batches = st.lists(st.lists(st.binary(min_size=0, max_size=90), min_size=1, max_size=10),
                   min_size=1, max_size=12)


def open_log(path: Path, broker_id: int, segment_bytes_max: int) -> PartitionLog:
    return PartitionLog(path, "t", 0, segment_bytes_max=segment_bytes_max, flush_policy=LAZY,
                        ids=MessageIdAllocator(broker_id))


def copy(master: PartitionLog, replica: PartitionLog, chunk_bytes: list[int]) -> int:
    """Replicate everything the master has; returns the chunks appended."""
    chunks, i = 0, 0
    while True:
        offset = replica.end_offset
        start = master.segment_start_of(offset)
        if offset >= master.visible_end:
            replica.append_replicated(offset, b"", start)  # a segment the master just began
            return chunks
        part = master.read_records(offset, chunk_bytes[i % len(chunk_bytes)])
        if not len(part.lengths):  # a record larger than the chunk: take it alone
            part = master.read_records(offset, part.first_record_bytes)
        replica.append_replicated(offset, bytes(part.view), start, epoch=1)
        chunks += 1
        i += 1


def data_files(log: PartitionLog) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(log.directory.glob("*.meta"))}


def payloads(log, end: int | None = None) -> list[bytes]:
    out, offset = [], log.first_offset
    end = log.visible_end if end is None else end
    while offset < end:
        part = log.read(offset, min(1 << 20, end - offset))
        decoded = MessageSet.decode(part.view, offset)
        out.extend(decoded.payloads())
        offset = decoded.next_offset
    return out


@settings(max_examples=40, deadline=None)
@given(batches=batches, segment_bytes_max=st.integers(60, 700),
       chunk_bytes=st.lists(st.integers(20, 400), min_size=1, max_size=5),
       cut=st.floats(0, 1))
def test_replica_is_byte_identical_and_cuts_back_cleanly(batches, segment_bytes_max,
                                                        chunk_bytes, cut):
    root = Path(tempfile.mkdtemp())
    try:
        master = open_log(root / "master", 1, segment_bytes_max)
        replica = open_log(root / "replica", 1, segment_bytes_max)
        for batch in batches:
            master.append_datas(batch)
        copy(master, replica, chunk_bytes)
        assert replica.end_offset == master.end_offset
        assert replica.segment_starts() == master.segment_starts()
        master.close()
        replica.close()
        assert data_files(replica) == data_files(master)

        master = open_log(root / "master", 1, segment_bytes_max)
        replica = open_log(root / "replica", 1, segment_bytes_max)
        assert replica.recovered_bytes_dropped == 0
        offsets = [0]
        offset = 0
        while offset < master.visible_end:
            part = master.read_records(offset, 1 << 20)
            offsets.extend(int(o) for o in np.cumsum(part.lengths + 20) + offset)
            offset = offsets[-1]
        cut_at = offsets[int(cut * (len(offsets) - 1))]
        reader = PartitionReader(root / "replica", "t", 0)
        kept = payloads(master, cut_at)
        before = payloads(reader)
        dropped = replica.truncate_to(cut_at)
        assert dropped == master.end_offset - cut_at
        assert replica.end_offset == cut_at and replica.visible_end == cut_at
        assert payloads(reader) == kept and len(before) >= len(kept)
        replica.close()
        replica = open_log(root / "replica", 1, segment_bytes_max)
        assert replica.recovered_bytes_dropped == 0
        assert replica.end_offset == cut_at and payloads(replica) == kept
        copy(master, replica, chunk_bytes)
        assert payloads(reader) == payloads(master)
        reader.close()
        master.close()
        replica.close()
        assert data_files(replica) == data_files(master)
    finally:
        shutil.rmtree(root)


def test_a_chunk_from_a_different_segment_layout_is_refused(tmp_path):
    master = open_log(tmp_path / "m", 1, 1 << 20)
    replica = open_log(tmp_path / "r", 1, 1 << 20)
    master.append_datas([b"a" * 10, b"b" * 10])
    part = master.read_records(0, 1 << 20)
    replica.append_replicated(0, bytes(part.view), 0)
    with pytest.raises(StorageError, match="segment boundaries differ"):
        replica.append_replicated(replica.end_offset, bytes(part.view), 15)
    with pytest.raises(Exception, match="ends inside a record"):
        replica.append_replicated(replica.end_offset, bytes(part.view)[:-3], 0)
    assert replica.end_offset == master.end_offset  # nothing of the refused chunks stored


def test_reset_to_starts_empty_where_the_master_starts(tmp_path):
    master = open_log(tmp_path / "m", 1, 100)
    for _ in range(10):
        master.append_datas([b"x" * 30])
    while len(master.segment_starts()) > 2:
        master.drop_oldest_segment()
    replica = open_log(tmp_path / "r", 1, 100)
    replica.append_replicated(0, bytes(master.read_records(master.first_offset, 50).view), 0)
    replica.reset_to(master.first_offset)
    assert replica.first_offset == replica.end_offset == master.first_offset
    copy(master, replica, [120])
    assert payloads(replica) == payloads(master)


def test_leader_epochs_answer_as_kip_279(tmp_path):
    epochs = LeaderEpochs(tmp_path)
    assert epochs.latest_epoch == 0 and epochs.end_offset_for(5, 100) == (0, 100)
    epochs.assign(1, 0)
    epochs.assign(1, 50)  # the latest already: nothing
    epochs.assign(3, 120)
    epochs.assign(4, 200)
    assert epochs.entries == [(1, 0), (3, 120), (4, 200)]
    assert epochs.end_offset_for(1, 300) == (1, 120)
    assert epochs.end_offset_for(2, 300) == (1, 120)  # no epoch 2 here: 1's end
    assert epochs.end_offset_for(4, 300) == (4, 300)
    assert epochs.end_offset_for(0, 300) == (0, 0)
    assert epochs.epoch_at(119) == 1 and epochs.epoch_at(120) == 3
    assert epochs.next_start_after(130) == 200 and epochs.next_start_after(250) is None
    with pytest.raises(StorageError):
        epochs.assign(2, 300)
    epochs.truncate_from(150)
    assert LeaderEpochs(tmp_path).entries == [(1, 0), (3, 120)]
    (tmp_path / "leader-epoch").write_text("0\n3\n1 0\n")
    with pytest.raises(StorageError, match="cut short"):
        LeaderEpochs(tmp_path)


def test_epoch_entries_past_the_log_end_are_dropped_when_read(tmp_path):
    """The epoch file is fsynced at each change, the records it names may not be (a power
    loss with unflushThreshold > 0): an entry past the recovered end must not survive, or the
    next replicated chunk of an older epoch fails (found in review)."""
    log_ = open_log(tmp_path, 1, 1 << 20)
    log_.epochs.assign(1, 0)
    log_.append_datas([b"a" * 10] * 3)
    log_.epochs.assign(2, log_.end_offset)  # assigned at a claim, at the end: kept
    end = log_.end_offset
    log_.epochs.assign(3, end + 500)  # as if the records of epoch 3 were lost with the power
    log_.close()
    reopened = open_log(tmp_path, 1, 1 << 20)
    assert reopened.epochs.entries == [(1, 0), (2, end)]
    reopened.epochs.assign(4, end)  # the next master epoch goes on from there
