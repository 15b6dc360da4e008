"""PartitionLog: append, read, roll, offsets, flush policy, retention, names (real files)."""

import ctypes
import mmap
import os
import time

import numpy as np
import pytest

from metaq_fast import message
from metaq_fast.errors import (
    CorruptRecordError,
    InvalidArgumentError,
    InvalidNameError,
    OffsetOutOfRangeError,
    SegmentGapError,
)
from metaq_fast.message import MessageSet, encode_data
from metaq_fast.storage import (
    FlushPolicy,
    MessageIdAllocator,
    NotRecordBoundaryError,
    PartitionLog,
    PartitionReader,
    RetentionPolicy,
    apply_retention,
)
from metaq_fast.storage import files
from metaq_fast.storage.ids import id_broker, id_millis
from metaq_fast.limits import MSG_ID_EPOCH_MS

GROUP_COMMIT = FlushPolicy(0, 10_000)
LAZY = FlushPolicy(1_000_000, 3_600_000)


def open_log(path, segment_bytes_max=1 << 20, policy=LAZY, broker_id=0, **kw):
    return PartitionLog(path, "test", 0, segment_bytes_max=segment_bytes_max, flush_policy=policy,
                        ids=MessageIdAllocator(broker_id), **kw)


def stored_file(log):
    return [(p.name, p.stat().st_size) for p in sorted(log.directory.glob("*.meta"))]


def test_metaq_storage_vector(tmp_path):
    """Reference §16.2: steps 6-9 leave one 113-byte file equal to the get answer."""
    log = open_log(tmp_path, policy=GROUP_COMMIT)
    offsets = []
    for _ in range(3):
        offsets.append(log.append_datas([b"hello"]).first_offset)
        log.flush()
    data, flag = encode_data(b"hello", "attribute")
    offsets.append(log.append_datas([data], flags=flag).first_offset)
    log.flush()
    assert offsets == [0, 25, 50, 75]
    answer = bytes(log.read(0, 1048576).view)
    assert len(answer) == 113
    log.close()
    assert stored_file(log) == [("00000000000000000000.meta", 113)]
    assert (log.directory / "00000000000000000000.meta").read_bytes() == answer
    # appending 7 garbage bytes and reopening truncates back to 113
    with open(log.directory / "00000000000000000000.meta", "ab") as f:
        f.write(b"garbage")
    log = open_log(tmp_path)
    assert log.visible_end == 113
    assert log.recovered_bytes_dropped == 7
    log.close()
    assert stored_file(log) == [("00000000000000000000.meta", 113)]


def test_roll_at_max_segment_size_metaq_vector(tmp_path):
    """maxSegmentSize=50: the second 25-byte put fills the file and rolls at once."""
    log = open_log(tmp_path, segment_bytes_max=50, policy=GROUP_COMMIT)
    for _ in range(3):
        log.append_datas([b"hello"])
    log.flush()
    assert log.segment_starts() == [0, 50]
    log.append_datas([b"hello"])
    assert log.segment_starts() == [0, 50, 100]
    log.close()
    assert stored_file(log) == [("00000000000000000000.meta", 50),
                                ("00000000000000000050.meta", 50),
                                ("00000000000000000100.meta", 0)]


def test_roll_before_append_that_would_pass_the_limit(tmp_path):
    log = open_log(tmp_path, segment_bytes_max=100)
    log.append_datas([b"x" * 30])  # 50 bytes
    log.append_datas([b"y" * 40])  # 60 more would pass 100: new segment
    assert log.segment_starts() == [0, 50]
    big = log.append_datas([b"z" * 500])  # larger than a segment: gets one of its own
    assert big.first_offset == 110
    assert log.segment_starts()[:3] == [0, 50, 110]
    assert bytes(log.read(110, 10_000).view)[20:] == b"z" * 500
    log.close()


def test_offsets_and_ids(tmp_path):
    log = open_log(tmp_path, broker_id=7)
    result = log.append_datas([b"a", b"bb", b"ccc"])
    assert result.offsets.tolist() == [0, 21, 43]
    assert result.end_offset == 66
    ids = result.msg_ids.tolist()
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all(id_broker(i) == 7 for i in ids)
    assert abs(id_millis(ids[0]) - time.time() * 1000) < 5000
    decoded = MessageSet.decode(log.read(0, 1000).view)
    assert decoded.msg_ids.tolist() == ids
    log.close()


def test_ids_keep_increasing_across_reopen_even_if_clock_was_ahead(tmp_path):
    log = open_log(tmp_path)
    future = MessageIdAllocator(0, clock_ms=lambda: int(time.time() * 1000) + 60_000)
    log.ids = future
    last = int(log.append_datas([b"x"]).msg_ids[-1])
    log.close()
    log = open_log(tmp_path)
    assert int(log.append_datas([b"y"]).msg_ids[0]) > last
    log.close()


def test_id_allocator_partitions_sequence_between_workers():
    clock = lambda: MSG_ID_EPOCH_MS + 5000
    a = MessageIdAllocator(3, slot=0, slots=2, clock_ms=clock)
    b = MessageIdAllocator(3, slot=1, slots=2, clock_ms=clock)
    ids_a = a.allocate(5000)  # more than one millisecond's worth: runs ahead, stays unique
    ids_b = b.allocate(5000)
    assert len(set(ids_a.tolist()) | set(ids_b.tolist())) == 10000
    assert (np.diff(ids_a) > 0).all() and (np.diff(ids_b) > 0).all()


def test_read_bounds_and_nearest_offset(tmp_path):
    log = open_log(tmp_path, segment_bytes_max=1024)
    for _ in range(100):
        log.append_datas([b"x" * 80])  # 100-byte records, 10 per segment
    assert log.segment_starts()[:3] == [0, 1000, 2000]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(10_000, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100)
    with pytest.raises(InvalidArgumentError):
        log.read(0, 0)
    part = log.read(950, 10_000)
    assert part.length == 50  # never spans two segments
    assert log.read(25, 30).length == 30  # no alignment check, as MetaQ
    assert [log.nearest_offset(o) for o in (-100, 0, 999, 1000, 2500, 10_000, 99_999)] == \
        [0, 0, 0, 1000, 2000, 10_000, 10_000]
    log.close()


def test_read_records_whole_records_and_boundaries(tmp_path):
    log = open_log(tmp_path)
    log.append_datas([b"a" * 10, b"b" * 20, b"c" * 30])
    part = log.read_records(0, 75)
    assert part.lengths.tolist() == [10, 20]
    assert part.length == 70
    with pytest.raises(NotRecordBoundaryError) as err:
        log.read_records(35, 100)
    assert err.value.record_offset == 30
    tiny = log.read_records(70, 10)
    assert tiny.lengths.tolist() == [] and tiny.first_record_bytes == 50
    log.close()


def test_message_set_append_fills_ids_and_checks_index(tmp_path):
    log = open_log(tmp_path)
    datas = [b"x" * 5, b"yy", b"zzz" * 10]
    records = bytes(message.encode_records(datas, 0, 0))
    result = log.append_message_set(records, [5, 2, 30], verify_crcs=True)
    decoded = MessageSet.decode(log.read(0, 1000).view)
    assert decoded.msg_ids.tolist() == result.msg_ids.tolist()
    assert decoded.payloads() == datas
    with pytest.raises(InvalidArgumentError):
        log.append_message_set(records, [5, 3, 29], verify_crcs=False)
    bad = bytearray(records)
    bad[-1] ^= 1
    from metaq_fast.errors import ChecksumError
    with pytest.raises(ChecksumError):
        log.append_message_set(bytes(bad), [5, 2, 30], verify_crcs=True)
    assert log.visible_end == result.end_offset  # nothing written by the failures
    log.close()


def test_equal_size_message_set_is_checked_record_by_record(tmp_path):
    log = open_log(tmp_path)
    datas = [bytes([i]) * 10 for i in range(4)]
    records = bytearray(message.encode_records(datas, 0, 0))
    result = log.append_message_set(bytes(records), [10] * 4, verify_crcs=True)
    assert MessageSet.decode(log.read(0, 1000).view).payloads() == datas
    assert result.offsets.tolist() == [0, 30, 60, 90]
    lying = bytearray(records)
    lying[2 * 30 + 3] = 11  # record 2's length field says 11, the index says 10 like the rest
    with pytest.raises(InvalidArgumentError, match="record 2"):
        log.append_message_set(bytes(lying), [10] * 4, verify_crcs=False)
    with pytest.raises(InvalidArgumentError):  # index and body disagree on the total
        log.append_message_set(bytes(records), [10] * 3, verify_crcs=False)
    with pytest.raises(InvalidArgumentError):
        log.append_message_set(bytes(records), [-1, 10, 10, 10], verify_crcs=False)
    assert log.visible_end == result.end_offset
    log.close()


def test_group_commit_makes_records_visible_only_after_flush(tmp_path):
    log = open_log(tmp_path, policy=GROUP_COMMIT)
    log.append_datas([b"x"])
    assert log.visible_end == 0 and log.flush_due()
    assert log.flush() == 21
    assert log.visible_end == 21 and not log.flush_due()
    log.close()


def test_flush_policy_threshold_is_strict_and_interval_counts(tmp_path):
    now = [0.0]
    log = open_log(tmp_path, policy=FlushPolicy(3, 1000), clock_s=lambda: now[0])
    log.append_datas([b"a"] * 3)
    assert not log.flush_due()  # 3 is not more than 3 (MetaQ compares strictly)
    log.append_datas([b"a"])
    assert log.flush_due()
    log.flush()
    log.append_datas([b"b"])
    assert not log.flush_due()
    now[0] = 1.5
    assert log.flush_due()
    log.close()


def test_reader_in_other_process_view_follows_owner(tmp_path):
    log = open_log(tmp_path, segment_bytes_max=200)
    reader = PartitionReader(tmp_path, "test", 0)
    with pytest.raises(OffsetOutOfRangeError):
        reader.read(0, 100)
    log.append_datas([b"x" * 80])
    assert bytes(reader.read(0, 1000).view) == bytes(log.read(0, 1000).view)
    for _ in range(5):
        log.append_datas([b"y" * 80])  # six 100-byte records: segments at 0, 200, 400, 600
    assert reader.segment_starts() == log.segment_starts()
    assert reader.read(400, 1000).length == 200
    assert reader.read_records(200, 1000).lengths.tolist() == [80, 80]
    log.close()
    reader.close()


def test_flipped_byte_in_closed_segment_is_reported_never_served(tmp_path):
    log = open_log(tmp_path, segment_bytes_max=1000)
    for _ in range(30):
        log.append_datas([b"p" * 80] * 2)
    log.close()
    first = log.directory / "00000000000000000000.meta"
    raw = bytearray(first.read_bytes())
    raw[520 + 30] ^= 0x40  # inside the data of the record at 500
    first.write_bytes(bytes(raw))
    log = open_log(tmp_path, segment_bytes_max=1000)
    part = log.read(0, 10_000)
    assert part.length == 500  # everything before the damaged record, nothing of it
    with pytest.raises(CorruptRecordError) as err:
        log.read(500, 100)
    assert err.value.position == 500
    assert log.read(600, 100).length == 100  # later intact records are still served
    found = log.scrub()
    assert [e.position for e in found] == [500]
    reader = PartitionReader(tmp_path, "test", 0)
    with pytest.raises(CorruptRecordError):
        reader.read(500, 100)
    reader.close()
    log.close()


def test_damaged_id_in_closed_segment_is_pinned_to_its_record(tmp_path):
    log = open_log(tmp_path, segment_bytes_max=1000)
    for _ in range(10):
        log.append_datas([b"q" * 80] * 5)
    log.close()
    first = log.directory / "00000000000000000000.meta"
    raw = bytearray(first.read_bytes())
    raw[300 + 12] ^= 0x01  # the id field of the record at 300 (its CRC still matches)
    first.write_bytes(bytes(raw))
    log = open_log(tmp_path, segment_bytes_max=1000)
    assert log.read(0, 10_000).length == 300
    assert [e.position for e in log.scrub()] == [300]
    log.close()


def test_gap_between_segments_refuses_to_open(tmp_path):
    log = open_log(tmp_path, segment_bytes_max=100)
    for _ in range(5):
        log.append_datas([b"x" * 80])
    log.close()
    os.truncate(log.directory / "00000000000000000000.meta", 60)
    with pytest.raises(SegmentGapError, match="don't validate"):
        open_log(tmp_path, segment_bytes_max=100)


def test_retention_deletes_only_closed_expired_segments(tmp_path):
    log = open_log(tmp_path, segment_bytes_max=100)
    for _ in range(6):
        log.append_datas([b"x" * 80])
    starts = log.segment_starts()
    assert len(starts) == 7  # six full segments and the empty active one
    old = time.time() - 3 * 3600
    for start in starts:  # everything old, the active segment included
        os.utime(files.data_file(log.directory, start), (old, old))
    os.utime(files.data_file(log.directory, starts[3]), None)  # one young segment
    actions = apply_retention(log, RetentionPolicy("delete", 2 * 3600 * 1000))
    assert [a.start_offset for a in actions] == starts[:3]  # stops at the young one, in order
    assert log.segment_starts() == starts[3:]
    assert log.first_offset == starts[3]
    assert not files.data_file(log.directory, starts[0]).exists()
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, 100)
    assert log.nearest_offset(0) == starts[3]
    for start in log.segment_starts():
        os.utime(files.data_file(log.directory, start), (old, old))
    actions = apply_retention(log, RetentionPolicy("archive", 1000, compress=True))
    assert len(actions) == 3 and log.segment_starts() == [starts[-1]]  # active stays
    assert files.data_file(log.directory, starts[3]).with_suffix(".meta.zip").exists()
    log.close()
    log = open_log(tmp_path, segment_bytes_max=100)
    assert log.first_offset == starts[-1]
    log.close()


def test_archive_without_compression_renames(tmp_path):
    log = open_log(tmp_path, segment_bytes_max=100)
    for _ in range(2):
        log.append_datas([b"x" * 80])
    old = time.time() - 100
    os.utime(files.data_file(log.directory, 0), (old, old))
    apply_retention(log, RetentionPolicy("archive", 10_000))
    assert (log.directory / "00000000000000000000.meta.arc").exists()
    log.close()


@pytest.mark.parametrize("name", ["../x", "..", ".", "", "a/b", "x" * 250, "a b", "t\x00"])
def test_names_that_could_escape_data_path_are_refused(tmp_path, name):
    with pytest.raises(InvalidNameError):
        PartitionLog(tmp_path, name, 0, segment_bytes_max=100, flush_policy=LAZY,
                     ids=MessageIdAllocator(0))


def test_bad_partition_refused(tmp_path):
    with pytest.raises(InvalidArgumentError):
        PartitionLog(tmp_path, "t", -1, segment_bytes_max=100, flush_policy=LAZY,
                     ids=MessageIdAllocator(0))


def test_metaq_written_segments_without_sidecars_open_and_verify(tmp_path):
    """A data directory moved over from MetaQ: plain .meta files, no sidecars."""
    directory = tmp_path / "test-0"
    directory.mkdir()
    records = bytes(message.encode_records([b"m" * 30] * 10, np.arange(1, 11), 0))
    (directory / "00000000000000000000.meta").write_bytes(records[:250])
    (directory / "00000000000000000250.meta").write_bytes(records[250:] + b"\x00\x01torn")
    log = open_log(tmp_path)
    assert log.segment_starts() == [0, 250]
    assert log.visible_end == 500
    assert MessageSet.decode(log.read(0, 1000).view).payloads() == [b"m" * 30] * 5
    log.append_datas([b"new"])
    assert [m.payload for m in MessageSet.decode(log.read(250, 1000).view)][-1] == b"new"
    log.close()


def test_flipped_byte_in_flushed_part_of_last_segment_is_caught_on_read(tmp_path):
    """Recovery trusts what was flushed; reads still verify it (lazily, by batch hash)."""
    log = open_log(tmp_path)
    for _ in range(10):
        log.append_datas([b"r" * 80] * 3)
    log.close()  # everything flushed: the recovery point is the end
    meta = log.directory / "00000000000000000000.meta"
    raw = bytearray(meta.read_bytes())
    raw[700 + 50] ^= 0x10
    meta.write_bytes(bytes(raw))
    log = open_log(tmp_path)
    assert log.visible_end == 3000  # not truncated: the damage is bit rot, not a torn tail
    assert log.read(0, 10_000).length == 700
    with pytest.raises(CorruptRecordError):
        log.read(700, 100)
    log.close()


_libc = ctypes.CDLL(None, use_errno=True)
MADV_POPULATE_WRITE = 23  # Linux >= 5.14


def kernel_populates() -> bool:
    """Whether madvise(MADV_POPULATE_WRITE) works here, asked of the kernel on a fresh mapping
    (independently of the code under test)."""
    buffer = mmap.mmap(-1, mmap.PAGESIZE)
    address = np.frombuffer(buffer, dtype=np.uint8).ctypes.data
    return _libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(mmap.PAGESIZE),
                         MADV_POPULATE_WRITE) == 0


def test_populate_now_prepares_pages_without_changing_contents(tmp_path):
    log = open_log(tmp_path)  # 1 MiB segments
    first = log.append_datas([b"before"])
    segment = log.active
    # the pages from the end of the records to 1 MiB past it (rounded up), within the segment
    start = segment.size // mmap.PAGESIZE * mmap.PAGESIZE
    stop = min(segment.capacity, -(-(segment.size + (1 << 20)) // mmap.PAGESIZE) * mmap.PAGESIZE)
    assert stop - start == 1 << 20
    populated = segment.populate_now(1 << 20)
    if kernel_populates():
        assert populated == stop - start
    else:  # the writer faults pages in itself; populate_now says it did nothing
        assert populated == 0
    second = log.append_datas([b"after" * 3])
    decoded = MessageSet.decode(log.read(0, 1000).view)
    assert decoded.payloads() == [b"before", b"after" * 3]
    assert second.first_offset == first.end_offset
    log.close()
    reopened = open_log(tmp_path)
    assert reopened.visible_end == second.end_offset  # populated zero pages are not records
    reopened.close()
