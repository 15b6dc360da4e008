"""A consumer group changing while messages flow: a second consumer joins, then the first one is
stopped with SIGTERM; the union of what they received holds every message sent, by content.

Two real brokers (two partitions each), a real ZooKeeper, a producer (``Producer`` in a
``tests.clientproc.Sender`` thread of this process) and two consumer processes
(``tests.clientproc.ConsumerProc``: each writes every record it polled to a file before its
next poll, so the file is a superset of what it committed).

Partitions sort ``0-0 0-1 1-0 1-1`` and consumer ids ``g_c0 < g_c1``; with MetaQ's DEFAULT split:

* c0 alone owns all four;
* c1 joins: c0 keeps ``0-0 0-1``, ``1-0 1-1`` move to c1. c0 commits their consumed position
  when releasing them, but what it polled last is not consumed yet (it counts as consumed at the
  next poll), so c1 may get again at most that last poll: with ``max_batches=1`` and
  ``fetch_bytes=FETCH_BYTES`` at most ``FETCH_BYTES // record size`` records per moved partition;
* c0 gets SIGTERM: ``close`` counts its last poll as consumed, commits, leaves; ``0-0 0-1`` move
  to c1 with no redelivery at all. A close that did not commit would show up here as duplicates
  (c1 would resume from the last periodic commit, up to ``commit_interval_ms`` older).

Nothing may be missing; no consumer receives a record twice; every duplicate is from a partition
moved at the join and within that bound. Every wait has a deadline; the sender is bounded in
count and time.
"""

from __future__ import annotations

import signal

import pytest

from metaq_fast.client.producer import Producer
from tests.clientproc import ConsumerProc, Sender, owners, start_brokers, stop_all
from tests.helpers import wait_until

pytestmark = [pytest.mark.zk, pytest.mark.timeout(150)]

TOPIC = "flow"
GROUP = "members"
FETCH_BYTES = 4096
PAYLOAD_BYTES = len(b"gm-00000000")
RECORD_BYTES = 20 + PAYLOAD_BYTES  # MetaQ's record header + data
JOIN_MOVED = {"1-0", "1-1"}
LEAVE_MOVED = {"0-0", "0-1"}
ALL = sorted(JOIN_MOVED | LEAVE_MOVED)


def consumer(tmp_path, zk_connect, cid: str) -> ConsumerProc:
    return ConsumerProc(tmp_path / "clients", zk=zk_connect, group=GROUP, topic=TOPIC,
                        consumer_id=cid, fetch_bytes=FETCH_BYTES, max_batches=1,
                        commit_interval_ms=1000)


def wait_owners(zk, want: dict[str, str], procs, timeout_s: float = 15.0) -> None:
    def state() -> str:
        return (f"owners {owners(zk, GROUP, TOPIC)}, want {want}; reported "
                f"{ {p.name: p.assignment(TOPIC) for p in procs} }")

    def settled() -> bool:
        if owners(zk, GROUP, TOPIC) != want:
            return False
        return all(p.assignment(TOPIC) == sorted(k for k, v in want.items() if v == p.full_id)
                   for p in procs)

    wait_until(settled, timeout_s=timeout_s, interval_s=0.05, message=state)


def test_join_and_sigterm_leave_while_messages_flow_lose_nothing(brokers, zk_connect, zk_client,
                                                                 tmp_path):
    start_brokers(brokers, zk_connect, TOPIC, 2)
    c0 = consumer(tmp_path, zk_connect, "c0")
    c1 = consumer(tmp_path, zk_connect, "c1")
    producer = Producer(zk_connect)
    sender = Sender(producer, TOPIC, b"gm", chunk=20, pace_s=0.01, max_messages=40_000, max_s=60)
    try:
        c0.start()
        wait_owners(zk_client, {p: c0.full_id for p in ALL}, [c0])
        sender.start()
        wait_until(lambda: len(c0.records()) >= 300, timeout_s=20,
                   message=lambda: f"c0 received {len(c0.records())}")

        # ---- c1 joins while messages flow
        c1.start()
        joined_at_sent = len(sender.ok)
        wait_owners(zk_client, {**{p: c0.full_id for p in LEAVE_MOVED},
                                **{p: c1.full_id for p in JOIN_MOVED}}, [c0, c1])
        wait_until(lambda: len(c1.records()) >= 200 and len(sender.ok) >= joined_at_sent + 500,
                   timeout_s=20, message=lambda: f"after the join: c1 received "
                                                 f"{len(c1.records())}, {len(sender.ok)} sent")
        assert sender.is_alive(), "the sender stopped before the join was over"

        # ---- c0 leaves by SIGTERM while messages flow
        leave_at_sent = len(sender.ok)
        c0.proc.send_signal(signal.SIGTERM)
        assert c0.wait(20) == 0, c0.log_tail()
        assert c0.state()["closed"] is True
        assert f"{GROUP}_c0" not in zk_client.get_children(f"/meta/consumers/{GROUP}/ids")
        wait_owners(zk_client, {p: c1.full_id for p in ALL}, [c1])
        wait_until(lambda: len(sender.ok) >= leave_at_sent + 1000, timeout_s=20,
                   message=lambda: f"{len(sender.ok) - leave_at_sent} sent after the leave")
        assert sender.is_alive(), "the sender stopped before the leave was over"
        sender.finish()
        assert sender.failed == []
        sent = {payload: result for payload, result in sender.ok}
        assert len(sent) == len(sender.ok)

        def missing() -> set:
            return set(sent) - set(c0.payloads()) - set(c1.payloads())

        wait_until(lambda: not missing(), timeout_s=30,
                   message=lambda: f"{len(missing())} of {len(sent)} never received, e.g. "
                                   f"{sorted(missing())[:5]}")
    finally:
        if sender.is_alive():
            sender.stop_event.set()
            sender.join(90)
        producer.close()
        stop_all([c0, c1])
    assert c1.proc.returncode == 0, c1.log_tail()

    records = {c.name: c.records() for c in (c0, c1)}
    # Each record is the one the producer was told about (partition and offset), and no
    # consumer got any record twice.
    for name, got in records.items():
        payloads = [payload for _, _, payload in got]
        assert len(payloads) == len(set(payloads)), f"{name} received a record twice"
        for partition, offset, payload in got:
            result = sent[payload]
            assert (str(result.partition), result.offset) == (partition, offset), payload
    # c0 owned 1-x before the join and c1 received from every partition: both handoffs happened
    # with traffic.
    assert {p for p, _, _ in records[c0.name]} == set(ALL)
    assert {p for p, _, _ in records[c1.name]} == set(ALL)

    both = set(c0.payloads()) & set(c1.payloads())
    per_partition = {p: sorted(sent[payload].offset for payload in both
                               if str(sent[payload].partition) == p) for p in ALL}
    bound = FETCH_BYTES // RECORD_BYTES
    print(f"\n{len(sent)} sent; c0 received {len(records[c0.name])}, c1 "
          f"{len(records[c1.name])}; redelivered per partition "
          f"{ {p: len(v) for p, v in per_partition.items()} } (bound {bound} on the join's)")
    # The SIGTERM leave committed everything c0 had received: nothing redelivered there.
    assert all(not per_partition[p] for p in LEAVE_MOVED), per_partition
    for p in JOIN_MOVED:
        again = per_partition[p]
        assert len(again) <= bound, (p, len(again))
        if again:
            # The redelivered ones are the tail of what c0 received there, and the start of
            # what c1 received there: one handoff, one contiguous run.
            c0_offsets = [o for q, o, _ in records[c0.name] if q == p]
            c1_offsets = [o for q, o, _ in records[c1.name] if q == p]
            assert c0_offsets[-len(again):] == again, p
            assert c1_offsets[:len(again)] == again, p
