"""Recovery as a property: append random batches, cut or scribble the data file at a random
byte, reopen; exactly the records wholly before the damage survive, and appends continue.

The log is abandoned without close() (as a killed process leaves it: records in the page cache,
the file still at its preallocated size, no final flush), so the damage lies in the tail that
recovery must verify. A separate property damages a sealed segment, which recovery trusts and
reads must refuse instead.
"""

import gc
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from metaq_fast.errors import CorruptRecordError
from metaq_fast.message import MessageSet
from metaq_fast.storage import FlushPolicy, MessageIdAllocator, PartitionLog

NEVER_FLUSH = FlushPolicy(10**9, 10**9)

batches_strategy = st.lists(
    st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=12), min_size=1, max_size=8)


def open_log(path, segment_bytes_max=1 << 20):
    return PartitionLog(path, "t", 0, segment_bytes_max=segment_bytes_max,
                        flush_policy=NEVER_FLUSH, ids=MessageIdAllocator(1))


def read_all(log):
    out, offset = [], log.first_offset
    while offset < log.visible_end:
        part = log.read(offset, 1 << 20)
        decoded = MessageSet.decode(part.view, offset)
        out.extend(decoded.payloads())
        offset = decoded.next_offset
    return out


def abandon(log):
    """Drop the log like a killed process would: no flush, no truncation to size."""
    for seg in log._segments:
        if seg is not None:
            os.close(seg.fd)
            for table in seg.tables():
                os.close(table.fd)
                table.fd = -1
            seg.fd = -1
            seg.closed_for_append = True
    log._segments = []
    gc.collect()


class fresh_dir:
    """A new directory per hypothesis example (replays must not see an earlier example's data)."""

    def __enter__(self):
        self.path = Path(tempfile.mkdtemp(prefix="metaq-recovery-"))
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def append_batches(log, batches):
    payloads, ends = [], []
    for batch in batches:
        result = log.append_datas(batch)
        payloads.extend(batch)
        ends.extend((result.offsets + 20 + np.array([len(p) for p in batch])).tolist())
    return payloads, ends


@settings(max_examples=150, deadline=None)
@given(batches=batches_strategy, data=st.data())
def test_scribble_or_cut_keeps_exactly_the_records_before_the_damage(batches, data):
    with fresh_dir() as path:
        check_scribble_or_cut(path, batches, data)


def check_scribble_or_cut(path, batches, data):
    log = open_log(path)
    payloads, ends = append_batches(log, batches)
    total = ends[-1]
    directory = log.directory
    abandon(log)
    meta = directory / "00000000000000000000.meta"
    where = data.draw(st.integers(0, total - 1), label="damage at")
    if data.draw(st.booleans(), label="cut"):
        os.truncate(meta, where)
    else:
        size = data.draw(st.integers(1, 6), label="bytes scribbled")
        with open(meta, "r+b") as f:
            f.seek(where)
            old = f.read(size)
            f.seek(where)
            f.write(bytes(b ^ data.draw(st.integers(1, 255)) for b in old))
    survivors = sum(1 for end in ends if end <= where)
    log = open_log(path)
    try:
        assert log.visible_end == (ends[survivors - 1] if survivors else 0)
        assert read_all(log) == payloads[:survivors]
        log.append_datas([b"after", b"recovery"])
        assert read_all(log) == payloads[:survivors] + [b"after", b"recovery"]
    finally:
        log.close()
    log = open_log(path)
    assert read_all(log)[-2:] == [b"after", b"recovery"]
    assert log.recovered_bytes_dropped == 0
    log.close()


@settings(max_examples=60, deadline=None)
@given(batches=batches_strategy, data=st.data())
def test_damage_in_sealed_segment_is_refused_at_exactly_its_record(batches, data):
    with fresh_dir() as path:
        check_sealed_damage(path, batches, data)


def check_sealed_damage(path, batches, data):
    log = open_log(path, segment_bytes_max=400)
    payloads, ends = append_batches(log, batches)
    starts = log.segment_starts()
    log.close()
    assume(len(starts) >= 2)  # the damage goes in a sealed segment: there must be one
    sealed_end = starts[1]
    meta = log.directory / "00000000000000000000.meta"
    where = data.draw(st.integers(0, sealed_end - 1))
    with open(meta, "r+b") as f:
        f.seek(where)
        old = f.read(1)
        f.seek(where)
        f.write(bytes([old[0] ^ data.draw(st.integers(1, 255))]))
    record_starts = [0] + ends[:-1]
    damaged = max(i for i, s in enumerate(record_starts) if s <= where)
    log = open_log(path, segment_bytes_max=400)
    try:
        if record_starts[damaged]:
            assert log.read(0, 1 << 20).length == record_starts[damaged]
        with pytest.raises(CorruptRecordError):
            log.read(record_starts[damaged], 1 << 20)
        assert [e.position for e in log.scrub()] == [record_starts[damaged]]
    finally:
        log.close()


class LogModel(RuleBasedStateMachine):
    """PartitionLog against a list: append, read, roll (small segments), reopen, crash."""

    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="metaq-model-"))
        self.log = open_log(self.dir, segment_bytes_max=300)
        self.model: list[bytes] = []
        self.offsets: list[int] = []

    @rule(batch=st.lists(st.binary(max_size=90), min_size=1, max_size=6))
    def append(self, batch):
        result = self.log.append_datas(batch)
        assert result.first_offset == (self.offsets[-1] + 20 + len(self.model[-1]) if self.model else 0)
        self.model.extend(batch)
        self.offsets.extend(result.offsets.tolist())

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read_from_a_record(self, data):
        i = data.draw(st.integers(0, len(self.model) - 1))
        part = self.log.read(self.offsets[i], 1 << 16)
        decoded = MessageSet.decode(part.view, self.offsets[i])
        got = decoded.payloads()
        assert got == self.model[i : i + len(got)] and got
        records = self.log.read_records(self.offsets[i], 1 << 16)
        assert records.lengths.tolist() == [len(p) for p in self.model[i : i + len(records.lengths)]]

    @rule()
    def reopen(self):
        self.log.close()
        self.log = open_log(self.dir, segment_bytes_max=300)

    @rule()
    def crash(self):
        abandon(self.log)
        self.log = open_log(self.dir, segment_bytes_max=300)

    @rule()
    def flush(self):
        self.log.flush()

    @invariant()
    def everything_readable(self):
        assert read_all(self.log) == self.model

    def teardown(self):
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


LogModel.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_log_model = LogModel.TestCase
