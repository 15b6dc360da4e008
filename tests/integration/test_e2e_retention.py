"""Retention in a running broker, by segment age and on its ``deleteWhen`` schedule: what
``tests/integration/test_retention.py`` does not cover.

A segment's age is its data file's mtime (``storage/retention.py``), so the tests age segments
with ``os.utime``: on a stopped broker's data, then restart it (a restart must not make them
young again), or on a live broker's closed segments (nothing writes to a closed segment).

* ``delete,1`` (one hour, MetaQ's unit when there is no suffix), fired every second: segments
  older than an hour go, a 50-minute-old one and the ones behind it stay and stay readable; an
  old segment behind a young one stays too (only the oldest go, in order: no gap in the log).
* a ``deleteWhen`` that does not fire in the window (midnight, 1 January 2099) deletes nothing,
  although every closed segment is old, while another topic of the same broker with the same
  policy, fired every second, loses its old segments in that window.

Real broker processes (``brokers`` fixture), no ZooKeeper. Records are 100 bytes (20 of header,
80 of data) and ``maxSegmentSize=200``: two records per segment, segments start at 0, 200, ...
"""

from __future__ import annotations

import os
import time

import pytest

from tests.brokers import WireClient
from tests.clientproc import read_partition
from tests.helpers import wait_until

pytestmark = [pytest.mark.timeout(120)]

EVERY_SECOND = "* * * * * ?"
NEVER_IN_THIS_TEST = "0 0 0 1 1 ? 2099"
HOUR_S = 3600
RECORDS = 10  # -> closed segments 0..800, the active one at 1000


def payload(topic: str, i: int) -> bytes:
    return (b"%s-%02d-" % (topic.encode(), i)).ljust(80, b".")


def segment_starts(broker, topic: str) -> list[int]:
    return sorted(int(p.name[:-len(".meta")]) for p in (broker.data_path / f"{topic}-0")
                  .glob("*.meta"))


def age(broker, topic: str, start: int, seconds: float) -> None:
    path = broker.data_path / f"{topic}-0" / f"{start:020d}.meta"
    then = time.time() - seconds
    os.utime(path, (then, then))


def fill(broker, topic: str) -> None:
    client = WireClient(broker.port)
    try:
        for i in range(RECORDS):
            body = payload(topic, i)
            reply = client.request(b"put %s 0 %d 0 -1 %d\r\n%s" % (topic.encode(), len(body),
                                                                  i + 1, body))
            assert reply.code == 200, bytes(reply.body)
    finally:
        client.close()
    assert segment_starts(broker, topic) == [0, 200, 400, 600, 800, 1000]


def hold_for(seconds: float, check) -> None:
    """Call ``check()`` (it asserts) at every poll for ``seconds``: several cron firings."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check()
        time.sleep(0.05)
    check()


def assert_segments(broker, topic: str, want: list[int]) -> None:
    assert segment_starts(broker, topic) == want, topic


def deleted_lines(broker) -> list[str]:
    return [line for line in broker.log_text().splitlines() if "retention (delete) deleted" in line]


def test_age_policy_deletes_old_segments_and_keeps_young_ones(brokers):
    topic = "aged"
    broker = brokers("b", workers=1, system={"maxSegmentSize": 200},
                     topics={topic: {"numPartitions": 1, "deletePolicy": "delete,1",
                                     "deleteWhen": EVERY_SECOND}})
    fill(broker, topic)
    assert broker.stop() == 0
    age(broker, topic, 0, 2 * HOUR_S)
    age(broker, topic, 200, 2 * HOUR_S)
    age(broker, topic, 400, 50 * 60)  # young: under the hour
    age(broker, topic, 600, 3 * HOUR_S)  # old, but behind a young one
    broker.start()

    kept = [400, 600, 800, 1000]
    wait_until(lambda: segment_starts(broker, topic) == kept, timeout_s=15,
               message=lambda: f"segments {segment_starts(broker, topic)}, want {kept}")
    hold_for(2.5, lambda: assert_segments(broker, topic, kept))
    lines = deleted_lines(broker)
    assert len(lines) == 2 and all(f"{start:020d}.meta" in line
                                   for start, line in zip((0, 200), lines)), lines
    # The kept segments serve every record they hold; a read before them moves on (301).
    stored = read_partition(broker.port, topic, 0)
    assert stored.keys() == {100 * i for i in range(4, RECORDS)}
    assert [p for _, p in (stored[o] for o in sorted(stored))] == [
        payload(topic, i) for i in range(4, RECORDS)]
    client = WireClient(broker.port)
    try:
        reply = client.request(b"get %s g 0 0 1024 1\r\n" % topic.encode())
        assert (reply.code, bytes(reply.body)) == (301, b"400")
    finally:
        client.close()


def test_delete_when_that_does_not_fire_deletes_nothing(brokers):
    policy = {"numPartitions": 1, "deletePolicy": "delete,1"}
    broker = brokers("b", workers=1, system={"maxSegmentSize": 200},
                     topics={"never": {**policy, "deleteWhen": NEVER_IN_THIS_TEST},
                             "often": {**policy, "deleteWhen": EVERY_SECOND}})
    for topic in ("never", "often"):
        fill(broker, topic)
    for topic in ("never", "often"):
        for start in (0, 200, 400, 600, 800):  # every closed segment is old
            age(broker, topic, start, 2 * HOUR_S)

    def often_emptied() -> bool:
        assert_segments(broker, "never", [0, 200, 400, 600, 800, 1000])
        return segment_starts(broker, "often") == [1000]

    # The schedule that fires deletes the other topic's old segments in the window...
    wait_until(often_emptied, timeout_s=15,
               message=lambda: f"often: {segment_starts(broker, 'often')}")
    # ... and the one that does not fire keeps every segment through more firings.
    hold_for(2.5, lambda: assert_segments(broker, "never", [0, 200, 400, 600, 800, 1000]))
    assert len(deleted_lines(broker)) == 5
    assert all("often-0" in line for line in deleted_lines(broker))
    stored = read_partition(broker.port, "never", 0)
    assert [p for _, p in (stored[o] for o in sorted(stored))] == [
        payload("never", i) for i in range(RECORDS)]
