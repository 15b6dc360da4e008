"""Message-set encode/decode micro-benchmarks (pytest-benchmark): MetaQ's record layout for a
whole batch at a time (``metaq_fast.message``), and the per-message cost of metaq-bench's own
payload generation and verification (so its client-side overhead is known).

    .venv/bin/python -m pytest bench/bench_message.py --benchmark-only

One round = one batch of 1000 messages; msgs/s = 1000 / median round time, stored in
``extra_info`` (printed with ``-s``). The test suite runs each once with ``--benchmark-disable``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from metaq_fast import message
from metaq_fast.benchtool.payload import PayloadFactory, Verifier
from metaq_fast.message import MessageSet

BATCH = 1000


def record_rate(benchmark, what: str) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None or not stats.stats.median:
        return
    rate = BATCH / stats.stats.median
    benchmark.extra_info["msgs_per_s_median"] = round(rate)
    print(f"\n{what}: {rate:,.0f} msgs/s (median of {stats.stats.rounds} rounds)")


@pytest.fixture(params=[100, 1024], ids=["100B", "1KiB"])
def size(request) -> int:
    return request.param


@pytest.fixture
def datas(size) -> list[bytes]:
    return [os.urandom(size) for _ in range(BATCH)]


def test_encode_records(benchmark, datas, size):
    """Producer side: CRC of every record, headers laid out, one 2-D copy (equal sizes)."""
    out = benchmark(message.encode_records, datas, 0, 0)
    assert len(out) == BATCH * (size + message.HEADER_BYTES)
    record_rate(benchmark, f"encode_records {size} B")


def test_encode_records_mixed_sizes(benchmark):
    rng = np.random.default_rng(7)
    datas = [os.urandom(int(n)) for n in rng.integers(50, 151, BATCH)]
    out = benchmark(message.encode_records, datas, 0, 0)
    assert len(out) == sum(map(len, datas)) + BATCH * message.HEADER_BYTES
    record_rate(benchmark, "encode_records 50..150 B")


@pytest.fixture
def encoded(datas) -> bytes:
    return bytes(message.encode_records(datas, np.arange(BATCH, dtype=np.int64), 0))


def test_decode_scan(benchmark, encoded, size):
    """A MetaQ ``get`` answer: record boundaries found by scanning, headers gathered."""
    decoded = benchmark(MessageSet.decode, encoded, 0, verify=False)
    assert len(decoded) == BATCH
    record_rate(benchmark, f"MessageSet.decode {size} B")


def test_decode_scan_and_check_crcs(benchmark, encoded, size):
    """As a MetaQ client does it: every record's CRC recomputed."""
    decoded = benchmark(MessageSet.decode, encoded, 0, verify=True)
    assert len(decoded) == BATCH
    record_rate(benchmark, f"MessageSet.decode verify {size} B")


def test_decode_with_lengths(benchmark, encoded, size):
    """Our ``getm`` answer: lengths come with it, the decode is vectorised."""
    lengths = np.full(BATCH, size, dtype=np.int64)
    decoded = benchmark(MessageSet.decode_with_lengths, encoded, lengths, 0, verify=False)
    assert len(decoded) == BATCH
    record_rate(benchmark, f"MessageSet.decode_with_lengths {size} B")


def test_decode_and_copy_payloads(benchmark, encoded, size):
    """What an application that wants ``bytes`` pays: decode plus one copy per payload."""
    def run():
        return MessageSet.decode(encoded, 0, verify=False).payloads()

    assert len(benchmark(run)) == BATCH
    record_rate(benchmark, f"decode + payloads() {size} B")


def test_bench_payload_make(benchmark, size):
    """metaq-bench's producer: numbered, time-stamped, self-hashed payloads, as bytes."""
    factory = PayloadFactory(size, 1, 0, random_payload=True, seed=1)
    batch = benchmark(factory.payloads, 0, BATCH, 0)
    assert len(batch) == BATCH and len(batch[0]) == size
    record_rate(benchmark, f"metaq-bench payloads {size} B")


def test_bench_verify(benchmark, size):
    """metaq-bench's consumer: check every payload's hash and number, record its latency."""
    factory = PayloadFactory(size, 1, 0, random_payload=True, seed=1)
    decoded = MessageSet.decode(bytes(message.encode_records(factory.payloads(0, BATCH, 0), 0, 0)), 0)
    verifier = Verifier(size, 1, 1, [BATCH])
    benchmark(verifier.add, decoded.buf, decoded.positions, decoded.lengths, time.monotonic_ns())
    assert verifier.state.unique == BATCH and not verifier.state.corrupt
    record_rate(benchmark, f"metaq-bench verify {size} B")
