"""Storage micro-benchmarks: 100-byte messages in batches of 1000, checksums on.

    .venv/bin/python -m pytest bench/bench_storage.py --benchmark-only

Each benchmark stores msgs/s in ``extra_info`` (one round = one batch of 1000). The test suite
runs them once with ``--benchmark-disable`` so they cannot rot.
"""

import os

import numpy as np
import pytest
import xxhash

from metaq_fast import message
from metaq_fast.message import MessageSet
from metaq_fast.storage import FlushPolicy, MessageIdAllocator, PartitionLog

BATCH = 1000
SIZE = 100
NO_FLUSH = FlushPolicy(10**12, 10**12)  # measure appends, not fdatasync (see bench_flush)


POPULATE_BYTES = 128 << 20  # more than the rounds of one benchmark write


def new_log(path, segment_bytes_max=256 << 20):
    return PartitionLog(path, "bench", 0, segment_bytes_max=segment_bytes_max,
                        flush_policy=NO_FLUSH, ids=MessageIdAllocator(0))


def appending_log(path, benchmark, pages: str):
    """A log to append to. ``populated``: the segment's next pages are made writable first,
    as the broker's prefault thread does ahead of the writer, so the figure is the append path
    itself. ``fresh``: the writer meets fresh pages (the prefault thread still runs), so the
    figure includes the first touch of new memory, which on this VM depends on whether the
    host has backed the guest's free pages (run to run: 96-156 us a batch measured)."""
    log = new_log(path)
    if pages == "populated" and not getattr(benchmark, "disabled", False):
        assert log.active.populate_now(POPULATE_BYTES) > 0, "kernel without MADV_POPULATE_WRITE"
    return log


PAGES = pytest.mark.parametrize("pages", ["populated", "fresh"])


def record_rate(benchmark, messages=BATCH):
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        benchmark.extra_info["msgs_per_s_median"] = round(messages / stats.stats.median)


@pytest.fixture
def payloads():
    return [os.urandom(SIZE) for _ in range(BATCH)]


@PAGES
def test_append_raw_payloads(benchmark, tmp_path, payloads, pages):
    """MetaQ put bodies: CRC computed here, records laid out, ids assigned, batch hashed."""
    log = appending_log(tmp_path, benchmark, pages)
    benchmark(log.append_datas, payloads)
    record_rate(benchmark)
    assert log.visible_end % (BATCH * (SIZE + 20)) == 0
    log.close()


def test_append_raw_payloads_mixed_sizes(benchmark, tmp_path):
    """Same, with sizes 50..150 (no uniform-size fast path)."""
    rng = np.random.default_rng(7)
    datas = [os.urandom(int(n)) for n in rng.integers(50, 151, BATCH)]
    log = new_log(tmp_path)
    benchmark(log.append_datas, datas)
    record_rate(benchmark)
    log.close()


@PAGES
def test_append_encoded_message_set(benchmark, tmp_path, payloads, pages):
    """A set the producer encoded (record CRCs computed client-side): the broker checks the
    one xxh3 of the request body, the index against every length field, fills ids, appends."""
    records = bytes(message.encode_records(payloads, 0, 0))
    lengths = np.full(BATCH, SIZE, dtype=np.int64)
    index = lengths.astype(">u4").tobytes()
    body = index + records
    checksum = xxhash.xxh3_64_intdigest(body)
    log = appending_log(tmp_path, benchmark, pages)

    def put_batch():
        view = memoryview(body)
        assert xxhash.xxh3_64_intdigest(view) == checksum
        count = len(view) - len(records)
        claimed = np.frombuffer(view[:count], dtype=">u4")
        return log.append_message_set(view[count:], claimed, verify_crcs=False)

    result = benchmark(put_batch)
    record_rate(benchmark)
    assert len(result) == BATCH
    log.close()


def filled_log(path, batches=200):
    log = new_log(path)
    payload_batch = [os.urandom(SIZE) for _ in range(BATCH)]
    for _ in range(batches):
        log.append_datas(payload_batch)
    return log


def _reader_bench(benchmark, log, read_decode):
    # The first read of each batch verifies its xxh3 (the log was reopened, so nothing is
    # verified yet); a pass over the whole log before timing would hide that cost, so the
    # benchmark cycles over more data than its warm-up touches.
    decoded = benchmark(read_decode)
    record_rate(benchmark)
    assert len(decoded) == BATCH


def reopened_filled_log(path, batches=400):
    log = filled_log(path, batches)
    log.close()
    return new_log(path)


def test_read_and_decode(benchmark, tmp_path):
    """MetaQ get semantics (a byte range, the last record may be cut) and a decode to header
    arrays and record positions. Integrity: the read verifies each batch's xxh3 once; the
    per-record CRC is not recomputed (see test_read_decode_and_check_every_crc)."""
    log = reopened_filled_log(tmp_path)
    chunk = BATCH * (SIZE + 20)
    state = {"offset": 0}

    def read_decode():
        offset = state["offset"]
        part = log.read(offset, chunk)
        decoded = MessageSet.decode(part.view, offset, verify=False)
        state["offset"] = decoded.next_offset % log.visible_end
        return decoded

    _reader_bench(benchmark, log, read_decode)
    log.close()


def test_read_decode_and_check_every_crc(benchmark, tmp_path):
    """As above plus MetaQ's per-record CRC check, as a MetaQ client does it."""
    log = reopened_filled_log(tmp_path)
    chunk = BATCH * (SIZE + 20)
    state = {"offset": 0}

    def read_decode():
        offset = state["offset"]
        part = log.read(offset, chunk)
        decoded = MessageSet.decode(part.view, offset, verify=True)
        state["offset"] = decoded.next_offset % log.visible_end
        return decoded

    _reader_bench(benchmark, log, read_decode)
    log.close()


def test_read_records_and_decode_with_index(benchmark, tmp_path):
    """Our getm path: whole records plus their lengths from the index, vectorised decode."""
    log = reopened_filled_log(tmp_path)
    chunk = BATCH * (SIZE + 20)
    state = {"offset": 0}

    def read_decode():
        offset = state["offset"]
        part = log.read_records(offset, chunk)
        decoded = MessageSet.decode_with_lengths(part.view, part.lengths, offset, verify=False)
        state["offset"] = decoded.next_offset % log.visible_end
        return decoded

    _reader_bench(benchmark, log, read_decode)
    log.close()


def test_flush_after_batch(benchmark, tmp_path, payloads):
    """Group commit cost: append a batch, then fdatasync data and sidecars."""
    log = PartitionLog(tmp_path, "bench", 0, segment_bytes_max=256 << 20,
                       flush_policy=FlushPolicy(0, 1000), ids=MessageIdAllocator(0))

    def append_and_flush():
        log.append_datas(payloads)
        log.flush()

    benchmark.pedantic(append_and_flush, rounds=50, iterations=1)
    record_rate(benchmark)
    log.close()
