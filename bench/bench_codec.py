"""Micro-benchmarks of the protocol codec (pytest-benchmark).

Run: ``.venv/bin/python -m pytest bench/bench_codec.py --benchmark-only``. Each benchmark handles
10,000 messages per round; msgs/s = 10,000 / median round time (also stored in extra_info and
printed with ``-s``). CI runs them once with ``--benchmark-disable``.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from metaq_fast.protocol import (
    RequestDecoder,
    ResponseDecoder,
    encode_put_ok,
    encode_put_ok_many,
)

MESSAGES = 10_000
BODY_BYTES = 100
RECV_BYTES = 64 * 1024


def pipelined_puts(count: int = MESSAGES) -> bytes:
    """Java-client puts (7-token form with a real checksum), 100-byte bodies, opaques 0..N-1."""
    out = []
    for i in range(count):
        body = (b"%08d" % i) * (BODY_BYTES // 8) + b"x" * (BODY_BYTES % 8)
        out.append(b"put bench-topic 3 %d 0 %d %d\r\n" % (len(body), zlib.crc32(body) & 0x7FFFFFFF, i) + body)
    return b"".join(out)


def pipelined_gets(count: int = MESSAGES) -> bytes:
    return b"".join(b"get bench-topic bench-group 3 %d 1048576 %d\r\n" % (i * 125, i) for i in range(count))


def reply_columns(count: int = MESSAGES):
    msg_ids = (np.arange(count, dtype=np.int64) << 12) + (1 << 52)
    offsets = np.arange(count, dtype=np.int64) * (20 + BODY_BYTES) + 10**9
    opaques = np.arange(count, dtype=np.int64)
    return msg_ids, offsets, opaques


def report(benchmark, what: str) -> None:
    stats = getattr(benchmark, "stats", None)
    if not stats:
        return
    rate = MESSAGES / stats.stats.median
    benchmark.extra_info["msgs_per_s_median"] = round(rate)
    print(f"\n{what}: {rate:,.0f} msgs/s (median of {stats.stats.rounds} rounds)")


@pytest.fixture(scope="module")
def put_stream() -> bytes:
    return pipelined_puts()


def decode_all(stream: bytes, chunk: int | None = None) -> int:
    dec = RequestDecoder()
    count = 0
    if chunk is None:
        dec.feed(stream)
        count = len(dec.read_commands())
    else:
        for i in range(0, len(stream), chunk):
            dec.feed(stream[i : i + chunk])
            count += len(dec.read_commands())
    return count


def test_decode_pipelined_puts(benchmark, put_stream):
    """10,000 pipelined puts with 100-byte bodies, fed as one buffer."""
    assert benchmark(decode_all, put_stream) == MESSAGES
    report(benchmark, "decode puts (one buffer)")


def test_decode_pipelined_puts_in_recv_chunks(benchmark, put_stream):
    """The same stream fed in 64 KiB chunks (commands cut at chunk ends), as a socket gives it."""
    assert benchmark(decode_all, put_stream, RECV_BYTES) == MESSAGES
    report(benchmark, "decode puts (64 KiB chunks)")


def test_decode_pipelined_gets(benchmark):
    stream = pipelined_gets()
    assert benchmark(decode_all, stream) == MESSAGES
    report(benchmark, "decode gets")


def test_decode_put_replies_client_side(benchmark):
    msg_ids, offsets, opaques = reply_columns()
    stream = encode_put_ok_many(msg_ids, 3, offsets, opaques)

    def run() -> int:
        dec = ResponseDecoder()
        dec.feed(stream)
        return len(dec.read_commands())

    assert benchmark(run) == MESSAGES
    report(benchmark, "decode put replies (client)")


def test_encode_put_replies_vectorised(benchmark):
    """10,000 put replies with encode_put_ok_many (one call)."""
    msg_ids, offsets, opaques = reply_columns()
    out = benchmark(encode_put_ok_many, msg_ids, 3, offsets, opaques)
    assert out.count(b"result 200 ") == MESSAGES
    report(benchmark, "encode put replies (encode_put_ok_many)")


@pytest.mark.parametrize("batch", [100, 1000])
def test_encode_put_replies_vectorised_in_batches(benchmark, batch):
    """encode_put_ok_many called per batch of ``batch`` replies (what one read cycle yields)."""
    msg_ids, offsets, opaques = reply_columns()

    def run() -> int:
        return sum(
            len(encode_put_ok_many(msg_ids[i : i + batch], 3, offsets[i : i + batch], opaques[i : i + batch]))
            for i in range(0, MESSAGES, batch)
        )

    assert benchmark(run) > 0
    report(benchmark, f"encode put replies (encode_put_ok_many per {batch})")


def test_encode_put_replies_one_by_one(benchmark):
    """10,000 put replies with encode_put_ok, joined."""
    msg_ids, offsets, opaques = (a.tolist() for a in reply_columns())

    def run() -> bytes:
        return b"".join([encode_put_ok(i, 3, o, q) for i, o, q in zip(msg_ids, offsets, opaques)])

    out = benchmark(run)
    assert out == encode_put_ok_many(*reply_columns()[:1], 3, *reply_columns()[1:])
    report(benchmark, "encode put replies (encode_put_ok loop)")
