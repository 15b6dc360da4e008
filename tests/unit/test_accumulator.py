"""Unit tests of metaq_fast.client.accumulator: the producer's batching, without a broker."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from metaq_fast.client import accumulator as a
from metaq_fast.errors import BufferFullError, RequestTimeoutError
from metaq_fast.zk.paths import Partition

P1, P2 = Partition(0, 1), Partition(0, 2)


def make(**kw) -> a.Accumulator:
    options = dict(batch_size=3, batch_bytes=1 << 20, linger_s=60.0, max_in_flight=1,
                   buffer_bytes=1 << 20, block_s=0.05)
    options.update(kw)
    return a.Accumulator(**options)


def slot(p: Partition, pinned: bool = False) -> tuple:
    return ("t", p.broker_id, p.partition, pinned)


def drain(acc: a.Accumulator, now: float):
    with acc.lock:  # as the sender calls it
        return acc.drain_locked(now)


def test_module_is_pure():
    imported = set()
    for node in ast.walk(ast.parse(Path(a.__file__).read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported <= {"__future__", "threading", "time", "collections", "concurrent",
                        "..errors"}, imported


def test_batch_closes_at_batch_size_and_drains_in_order():
    acc = make()
    futures = [acc.append(slot(P1), "t", P1, None, b"x%d" % i, 0) for i in range(4)]
    assert [i for _f, i in futures] == [0, 1, 2, 0]  # the fourth opened a new batch
    assert acc.unfinished == 2 and acc.queued == 1 and len(acc.filling) == 1
    to_send, wait = drain(acc, time.monotonic())
    assert [b.datas for b in to_send] == [[b"x0", b"x1", b"x2"]]
    assert wait is not None and wait > 50  # the open batch lingers
    assert acc.buffered == sum(20 + len(b"x%d" % i) for i in range(4))


def test_batch_bytes_and_linger_close_a_batch():
    acc = make(batch_bytes=50, linger_s=0.0)
    acc.append(slot(P1), "t", P1, None, b"y" * 40, 0)  # 60 bytes with its header: closed
    acc.append(slot(P2), "t", P2, None, b"z", 0)  # closed by linger at the next drain
    assert acc.queued == 1
    to_send, _wait = drain(acc, time.monotonic() + 0.001)
    assert sorted(b.partition for b in to_send) == [P1, P2] and not acc.filling


def test_max_in_flight_retry_backoff_and_done():
    acc = make(batch_size=1)
    acc.append(slot(P1), "t", P1, None, b"a", 0)
    acc.append(slot(P1), "t", P1, None, b"b", 0)
    now = time.monotonic()
    (first,), _ = drain(acc, now)
    assert drain(acc, now)[0] == []  # one in flight per partition
    assert acc.requeue(first, P2, not_before_s=now + 30)  # a retry, elsewhere, later
    (second,), wait = drain(acc, now)
    assert second.datas == [b"b"] and first.partition == P2 and wait > 25
    assert acc.done(second) and acc.unfinished == 1
    second.future.set_result(None)
    assert not acc.done(second)  # finished once only
    assert not any(acc.in_flight.values())


def test_a_retry_goes_before_what_was_queued_after_it():
    """Order within a pinned partition across a retry (found by the cluster auditor): the
    retried batch re-entered its slot's queue at the back, so with max_in_flight=1 a batch sent
    after it was stored first."""
    acc = make(batch_size=1)
    pinned = slot(P1, pinned=True)
    for data in (b"a", b"b", b"c"):
        acc.append(pinned, "t", P1, None, data, 0)
    now = time.monotonic()
    (first,), _ = drain(acc, now)
    assert first.datas == [b"a"]
    assert acc.requeue(first, P1, not_before_s=now + 0.5)  # its attempt failed: back-off
    assert drain(acc, now)[0] == []  # b waits behind a's back-off, it does not overtake it
    sent = []
    for _ in range(3):
        (batch,), _ = drain(acc, now + 1.0)
        sent += batch.datas
        assert acc.done(batch)
        batch.future.set_result(None)
    assert sent == [b"a", b"b", b"c"]


def test_several_retries_of_one_slot_keep_their_order():
    """Review of issue 13: each retry went to the front of its slot's queue, so a, b, c in
    flight together and all failing came out in reverse of the order they failed (here b, a,
    c): the in-flight window reordered. Retries go back in sequence order, as in Kafka."""
    acc = make(batch_size=1, max_in_flight=3)
    pinned = slot(P1, pinned=True)
    for data in (b"a", b"b", b"c"):
        acc.append(pinned, "t", P1, None, data, 0)
    now = time.monotonic()
    taken, _ = drain(acc, now)
    assert [b.datas for b in taken] == [[b"a"], [b"b"], [b"c"]]
    by_data = {bytes(b.datas[0]): b for b in taken}
    for failed in (b"c", b"a", b"b"):  # they fail in another order than they were sent
        assert acc.requeue(by_data[failed], P1, not_before_s=now + 0.5)
    acc.append(pinned, "t", P1, None, b"d", 0)
    assert drain(acc, now)[0] == []  # all wait behind the head's back-off
    sent = []
    while len(sent) < 4:
        batches, _ = drain(acc, now + 1.0)
        assert batches
        for batch in batches:
            sent += batch.datas
            assert acc.done(batch)
            batch.future.set_result(None)
    assert sent == [b"a", b"b", b"c", b"d"]
    assert not any(acc.in_flight.values()) and acc.queued == 0


def test_a_batch_moved_to_another_partition_does_not_hold_it_up():
    """Review of issue 13: a retry moved to a healthy partition went to the front of its
    queue with the back-off meant for the broker that failed, and that partition sent
    nothing until the back-off was over. Now its queued batches go at once; the moved one
    joins the back of the queue when its back-off ends."""
    acc = make(batch_size=1)
    acc.append(slot(P1), "t", P1, None, b"x", 0)
    acc.append(slot(P2), "t", P2, None, b"y", 0)
    now = time.monotonic()
    first, _ = drain(acc, now)
    (x,) = [b for b in first if b.partition == P1]
    (y,) = [b for b in first if b.partition == P2]
    acc.append(slot(P2), "t", P2, None, b"z", 0)  # queued on P2 while y is in flight
    assert acc.requeue(x, P2, not_before_s=now + 0.5)  # P1 failed: x moves to P2
    assert x.partition == P2 and not acc.in_flight.get(slot(P1))  # released under P1's key
    assert acc.done(y)
    y.future.set_result(None)
    (batch,), wait = drain(acc, now)  # P2 sends what was queued there now
    assert batch.datas == [b"z"] and wait is not None and 0.4 < wait <= 0.5
    assert acc.done(batch)
    batch.future.set_result(None)
    acc.append(slot(P2), "t", P2, None, b"w", 0)  # queued during x's back-off: not held either
    (batch,), _ = drain(acc, now)
    assert batch.datas == [b"w"] and drain(acc, now)[0] == []
    assert acc.done(batch)
    batch.future.set_result(None)
    (batch,), wait = drain(acc, now + 1.0)  # its back-off over, the moved batch goes
    assert batch is x and wait is None
    assert acc.done(x) and acc.unfinished == 0 and not any(acc.in_flight.values())


def test_close_returns_a_moved_batch_still_backing_off():
    acc = make(batch_size=1)
    acc.append(slot(P1), "t", P1, None, b"x", 0)
    now = time.monotonic()
    (x,), _ = drain(acc, now)
    assert acc.requeue(x, P2, not_before_s=now + 30)
    assert acc.close() == [x]
    assert drain(acc, now + 60)[0] == []


def test_full_buffer_blocks_then_raises():
    acc = make(buffer_bytes=100)
    acc.append(slot(P1), "t", P1, None, b"q" * 70, 0)
    began = time.monotonic()
    with pytest.raises(BufferFullError):
        acc.append(slot(P1), "t", P1, None, b"r" * 70, 0)
    assert time.monotonic() - began >= 0.04


def test_flush_times_out_and_close_returns_leftovers():
    acc = make()
    acc.append(slot(P1), "t", P1, None, b"a", 0)
    with pytest.raises(RequestTimeoutError):
        acc.flush(0.05)
    assert acc.queued == 1 and not acc.filling  # flush closed the open batch
    (left,) = acc.close()
    assert left.datas == [b"a"] and acc.closed
    assert not acc.requeue(left, P1, 0.0)
