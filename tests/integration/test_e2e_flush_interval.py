"""``unflushInterval`` in a running broker: with a threshold never reached, the flush timer alone
makes a put durable, within the interval plus a bound, and not before the interval has passed;
with a long interval nothing is flushed in the same window.

What is observed, from outside the broker:

* ``partition.state`` (``metaq_fast/storage/state.py``, read here with plain file reads): word 2
  is the recovery point, the offset up to which everything was fdatasync'ed, written right after
  the flush (word 3 is its XOR check with ``0x5A5AA5A50F0FF0F0``);
* ``metaq_flush_seconds_count{worker="0"}`` on ``/metrics`` (``dashboardHttpPort``): the worker's
  flush rounds (``broker/flusher.py`` counts each one).

Real broker processes (``brokers`` fixture), no ZooKeeper.
"""

from __future__ import annotations

import struct
import time
import urllib.request

import pytest

from tests.brokers import WireClient
from tests.helpers import wait_until

pytestmark = [pytest.mark.timeout(120)]

TOPIC = "durable"
THRESHOLD = 1_000_000  # messages: never reached here
INTERVAL_MS = 1000
FLUSH_BOUND_S = 3.0  # a due flush is on disk this long after the interval, at the latest
STATE_MAGIC = int.from_bytes(b"MQSTATE1", "little")
CHECK_KEY = 0x5A5A_A5A5_0F0F_F0F0


def start(brokers, interval_ms: int):
    settings = {"unflushThreshold": THRESHOLD, "unflushInterval": interval_ms}
    return brokers(f"b{interval_ms}", workers=1,
                   system={**settings, "dashboardHttpPort": 0},
                   topics={TOPIC: {"numPartitions": 1, **settings}})


def recovery_point(broker) -> int | None:
    """The recovery point of ``TOPIC``-0 on disk; None before the partition exists."""
    try:
        words = struct.unpack("<8Q", (broker.data_path / f"{TOPIC}-0" / "partition.state")
                              .read_bytes()[:64])
    except (FileNotFoundError, struct.error):
        return None
    assert words[0] == STATE_MAGIC, words
    assert words[2] ^ CHECK_KEY == words[3], words  # not torn
    return words[2]


def flush_count(broker) -> int:
    port = broker.info["dashboard_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith('metaq_flush_seconds_count{worker="0"}'):
            return int(float(line.split()[-1]))
    raise AssertionError(f"no flush count in /metrics:\n{text[:2000]}")


def put(client: WireClient, body: bytes, opaque: int) -> int:
    """One put; the offset after its record."""
    reply = client.request(b"put %s 0 %d 0 -1 %d\r\n%s" % (TOPIC.encode(), len(body), opaque,
                                                          body))
    assert reply.code == 200, bytes(reply.body)
    _msg_id, _partition, offset = bytes(reply.body).split(b" ")
    return int(offset) + 20 + len(body)


def wait_flushed(broker, end: int, timeout_s: float) -> tuple[float, float]:
    """Poll until the recovery point reaches ``end``; (monotonic time of the last poll that saw
    it below, time of the first that saw it reached)."""
    before = time.monotonic()
    deadline = before + timeout_s
    while True:
        now = time.monotonic()
        point = recovery_point(broker)
        if point is not None and point >= end:
            return before, now
        if now > deadline:
            raise AssertionError(f"recovery point {point} still below {end} after {timeout_s} s "
                                 f"({flush_count(broker)} flushes)")
        before = now
        time.sleep(0.01)


def test_unflush_interval_timer_flushes_without_further_traffic(brokers):
    interval_s = INTERVAL_MS / 1000
    broker = start(brokers, INTERVAL_MS)
    client = WireClient(broker.port)
    try:
        assert flush_count(broker) == 0
        # First put: it creates the partition, whose flush clock starts there; the threshold is
        # far, so only the timer can flush it, and not before one interval.
        sent1 = time.monotonic()
        end1 = put(client, b"first", 1)
        below1, seen1 = wait_flushed(broker, end1, timeout_s=interval_s + FLUSH_BOUND_S)
        assert seen1 >= sent1 + interval_s, (sent1, seen1)
        # Second put at once: the last flush was less than an interval ago, so the put does not
        # flush; the timer does, one interval after the last flush, with no traffic following.
        end2 = put(client, b"second", 2)
        put_done = time.monotonic()
        assert put_done < below1 + interval_s, "the second put came too late to show anything"
        _, seen2 = wait_flushed(broker, end2, timeout_s=interval_s + FLUSH_BOUND_S)
        # The first flush was written after ``below1`` (that poll still saw the old point); the
        # second is due an interval after the first ended, and ``seen2`` comes after it.
        assert seen2 > below1 + interval_s, (below1, seen2)
        print(f"\nsecond put flushed {(seen2 - put_done) * 1000:.0f} ms after its reply, "
              f"{(seen2 - below1) * 1000:.0f} ms after the first flush (unflushInterval "
              f"{INTERVAL_MS} ms, timer tick 100 ms)")
        wait_until(lambda: flush_count(broker) == 2, timeout_s=5,
                   message=lambda: f"{flush_count(broker)} flushes")
        # Nothing unflushed: the timer starts no further flush.
        time.sleep(interval_s + 0.3)
        assert flush_count(broker) == 2
        assert recovery_point(broker) == end2
    finally:
        client.close()


def test_long_unflush_interval_does_not_flush_in_the_same_window(brokers):
    broker = start(brokers, 60_000)
    client = WireClient(broker.port)
    try:
        end = put(client, b"first", 1)
        assert recovery_point(broker) == 0
        # The window in which the 1000 ms broker above flushed (interval + 5 s bound is its
        # deadline; 2.5 s covers its flush with margin): nothing is flushed here.
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert recovery_point(broker) == 0
            time.sleep(0.05)
        assert flush_count(broker) == 0
        # The data is there, readable, just not fdatasync'ed yet.
        reply = client.request(b"get %s g 0 0 1024 3\r\n" % TOPIC.encode())
        assert b"first" in bytes(reply.data)
    finally:
        client.close()
    # A clean stop flushes it (the observation above does see flushes when they happen).
    assert broker.stop() == 0
    assert recovery_point(broker) == end
