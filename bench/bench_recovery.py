"""Opening a partition (recovery included) does not get slower with the amount stored.

    .venv/bin/python -m pytest bench/bench_recovery.py --benchmark-only

Each case fills a partition of 4 MiB segments, closes it (or abandons it, as a killed process
would), then times re-opening it. Recovery reads only the last segment after the recovery point,
so 1 segment and 40 segments of data should open in about the same time.
"""

import os

import pytest

from metaq_fast.storage import FlushPolicy, MessageIdAllocator, PartitionLog

SEGMENT = 4 << 20
PAYLOADS = [os.urandom(100) for _ in range(1000)]


def fill(path, segments: int) -> None:
    log = PartitionLog(path, "bench", 0, segment_bytes_max=SEGMENT,
                       flush_policy=FlushPolicy(10**9, 10**9), ids=MessageIdAllocator(0))
    while log.visible_end < 0.9 * SEGMENT * segments:
        log.append_datas(PAYLOADS)
    log.close()


def reopen(path):
    log = PartitionLog(path, "bench", 0, segment_bytes_max=SEGMENT,
                       flush_policy=FlushPolicy(10**9, 10**9), ids=MessageIdAllocator(0))
    end = log.visible_end
    log.close()
    return end


@pytest.mark.parametrize("segments", [1, 40])
def test_open_after_clean_close(benchmark, tmp_path, segments):
    fill(tmp_path, segments)
    end = benchmark.pedantic(reopen, args=(tmp_path,), rounds=5, iterations=1)
    benchmark.extra_info["stored_bytes"] = end
    assert end >= 0.9 * SEGMENT * segments


def test_open_after_crash_with_unflushed_tail(benchmark, tmp_path):
    """A killed writer: 4 MiB appended after the last flush, file left at its preallocated size;
    recovery verifies those batches by hash and truncates nothing."""
    fill(tmp_path, 20)
    log = PartitionLog(tmp_path, "bench", 0, segment_bytes_max=SEGMENT,
                       flush_policy=FlushPolicy(10**9, 10**9), ids=MessageIdAllocator(0))
    for _ in range(30):
        log.append_datas(PAYLOADS)
    log._segments = []  # abandoned: no flush, no cut to size (see tests/property/test_recovery)

    def reopen_crashed():
        # every round sees the same crashed state: reopening and not closing keeps it
        opened = PartitionLog(tmp_path, "bench", 0, segment_bytes_max=SEGMENT,
                              flush_policy=FlushPolicy(10**9, 10**9), ids=MessageIdAllocator(0))
        end = opened.visible_end
        opened._segments = []
        return end

    end = benchmark.pedantic(reopen_crashed, rounds=5, iterations=1)
    assert end > 0.9 * SEGMENT * 20
