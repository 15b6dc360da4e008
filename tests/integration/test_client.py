"""The client library against real brokers and a real ZooKeeper: producer results, consumer
groups (MetaQ's DEFAULT balancing, owner nodes, offsets), several groups, resuming, typed errors.

Consumers run as separate processes (``tests/clientproc.py``: each writes what it receives and
its assignment to files), started with ``start_new_session=True`` and the parent-death signal,
and stopped by PID in ``finally``. Brokers come from the ``brokers`` fixture (session timeout
4000 ms); consumer processes use a 4 s ZooKeeper session as well. Expected assignments are
computed with ``metaq_fast.client.balance.assign_all`` over the sorted consumer ids and
partition strings, and compared with what every process reports AND with the owner nodes
``/meta/consumers/<group>/owners/<topic>/<brokerId>-<partition>`` (data: the consumer id).
No fixed sleeps: ``wait_until`` everywhere; every loop is bounded.
"""

from __future__ import annotations

import time

import pytest

from metaq_fast.client.balance import assign_all
from metaq_fast.client.producer import BatchResult, MessageFuture, Producer, SendResult
from metaq_fast.client.consumer import Consumer
from metaq_fast.errors import (
    InvalidArgumentError,
    MessageTooLargeError,
    MetaqError,
    NoBrokerError,
    ProducerClosedError,
    ZooKeeperError,
)
from metaq_fast.limits import MESSAGE_BYTES_MAX_DEFAULT
from metaq_fast.zk.paths import Partition
from tests.clientproc import (
    ConsumerProc,
    ProducerProc,
    Sender,
    committed_offsets,
    owners,
    read_partition,
    stop_all,
)
from tests.clientproc import start_brokers as shared_start_brokers
from tests.helpers import free_port, wait_until

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

TOPIC = "orders"
PARTS_PER_BROKER = 2
HEADER_BYTES = 20  # MetaQ's record header; a record takes 20 + len(data) bytes of offset space


# ---- helpers -----------------------------------------------------------------------------------


def start_brokers(brokers, zk_connect: str, ids=(0, 1)) -> dict:
    return shared_start_brokers(brokers, zk_connect, TOPIC, PARTS_PER_BROKER, ids)


def partition_strings(ids) -> list[str]:
    return [f"{b}-{p}" for b in ids for p in range(PARTS_PER_BROKER)]


def start_consumers(tmp_path, zk_connect: str, group: str, ids, **kw) -> list[ConsumerProc]:
    procs = []
    for cid in ids:
        procs.append(ConsumerProc(tmp_path / "clients", zk=zk_connect, group=group, topic=TOPIC,
                                  consumer_id=cid, **kw))
        procs[-1].start()
    return procs


def wait_balanced(zk, group: str, procs: list[ConsumerProc], partitions, timeout_s: float = 20.0
                  ) -> dict[str, list[str]]:
    """Wait until every live process of ``procs`` reports exactly its DEFAULT share and the owner
    nodes say the same; returns the expected assignment."""
    live = [p for p in procs if p.alive()]
    expected = assign_all([p.full_id for p in live], partitions)
    expected_owners = {part: cid for cid, parts in expected.items() for part in parts}

    def state() -> str:
        return (f"expected {expected}; reported "
                f"{ {p.full_id: p.assignment(TOPIC) for p in live} }; owners "
                f"{owners(zk, group, TOPIC)}; dead: {[p.name for p in live if not p.alive()]}")

    def balanced() -> bool:
        assert all(p.alive() for p in live), state()
        return (all(p.assignment(TOPIC) == expected[p.full_id] for p in live)
                and owners(zk, group, TOPIC) == expected_owners)

    wait_until(balanced, timeout_s=timeout_s, interval_s=0.05, message=state)
    return expected


def produce(producer: Producer, payloads) -> dict[bytes, SendResult]:
    futures = [(p, producer.send(TOPIC, p)) for p in payloads]
    producer.flush(60)
    return {p: f.result() for p, f in futures}


def all_payloads(procs) -> list[bytes]:
    return [payload for p in procs for payload in p.payloads()]


# ---- 1. the three balancing cases --------------------------------------------------------------

# Broker ids 2 and 10 and consumer ids c1, c10, c2... make string order differ from numeric
# order on both sides: partitions sort "10-0" < "10-1" < "2-0" < "2-1", consumers "c1" < "c10"
# < "c2" (MetaQ §6.3, §8.3).
BROKER_IDS = (2, 10)
CASES = {
    "fewer": (["c2", "c10", "c1"], {"c1": ["10-0", "10-1"], "c10": ["2-0"], "c2": ["2-1"]}),
    "equal": (["c3", "c2", "c10", "c1"],
              {"c1": ["10-0"], "c10": ["10-1"], "c2": ["2-0"], "c3": ["2-1"]}),
    "more": (["c4", "c2", "c10", "c3", "c1"],
             {"c1": ["10-0"], "c10": ["10-1"], "c2": ["2-0"], "c3": ["2-1"], "c4": []}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_balancing_gives_metaq_default_assignment(case, brokers, zk_connect, zk_client, tmp_path):
    start_order, literal = CASES[case]
    group = f"bal-{case}"
    start_brokers(brokers, zk_connect, BROKER_IDS)
    partitions = partition_strings(BROKER_IDS)
    procs = start_consumers(tmp_path, zk_connect, group, start_order)  # not in sorted order
    producer = None
    try:
        expected = wait_balanced(zk_client, group, procs, partitions)
        # The strategy itself, spelled out for this case: the first `extra` consumers in string
        # order get one more; consumers beyond the partition count get nothing.
        assert expected == {f"{group}_{c}": parts for c, parts in literal.items()}
        owned = [part for parts in expected.values() for part in parts]
        assert sorted(owned) == sorted(partitions)  # each partition exactly once
        print(f"\n{case}: {expected}")

        # Traffic goes where the assignment says: 10 messages per partition, each received by
        # the owner of its partition only; an idle consumer receives nothing.
        producer = Producer(zk_connect)
        payloads = [b"%s-%04d" % (case.encode(), i) for i in range(10 * len(partitions))]
        sent = produce(producer, payloads)
        assert {str(r.partition) for r in sent.values()} == set(partitions)
        wait_until(lambda: set(all_payloads(procs)) >= set(payloads), timeout_s=20,
                   message=lambda: f"missing {len(set(payloads) - set(all_payloads(procs)))}")
        for proc in procs:
            for partition, offset, payload in proc.records():
                assert partition in expected[proc.full_id], (proc.name, partition)
                assert str(sent[payload].partition) == partition
                assert sent[payload].offset == offset
        idle = [p for p in procs if not expected[p.full_id]]
        assert all(p.records() == [] for p in idle)
        # Still balanced, nothing moved while messages flowed.
        assert owners(zk_client, group, TOPIC) == {part: cid for cid, parts in expected.items()
                                                   for part in parts}
    finally:
        if producer is not None:
            producer.close()
        stop_all(procs)
    assert all(p.proc.returncode == 0 for p in procs), [(p.name, p.log_tail()) for p in procs]
    # A clean close leaves the group: no ids, no owners.
    assert zk_client.get_children(f"/meta/consumers/{group}/ids") == []
    assert owners(zk_client, group, TOPIC) == {}


# ---- 3. a broker started mid-run gets producer traffic -----------------------------------------


def TopicSender(producer: Producer, prefix: bytes, **kw) -> Sender:
    return Sender(producer, TOPIC, prefix, **kw)


def test_new_broker_gets_traffic_without_client_restart(brokers, zk_connect, tmp_path):
    first = brokers("b0", zk_connect=zk_connect, broker_id=0, workers=1,
                    topics={TOPIC: {"numPartitions": PARTS_PER_BROKER}})
    producer = Producer(zk_connect)
    sender = TopicSender(producer, b"grow")
    try:
        assert producer.partitions_for(TOPIC) == [Partition(0, 0), Partition(0, 1)]
        sender.start()
        wait_until(lambda: len(sender.ok) >= 200, timeout_s=15, message="no sends answered")
        second = brokers("b1", zk_connect=zk_connect, broker_id=1, workers=1,
                         topics={TOPIC: {"numPartitions": PARTS_PER_BROKER}})
        started = len(sender.ok)
        wait_until(lambda: any(r.partition.broker_id == 1 for _, r in sender.ok[started:]),
                   timeout_s=15, message="no SendResult from the new broker")
        assert producer.partitions_for(TOPIC) == [Partition(b, p) for b in (0, 1) for p in (0, 1)]
        # Round robin over all four partitions from then on.
        mark = len(sender.ok)
        wait_until(lambda: len(sender.ok) >= mark + 400, timeout_s=15, message="sends stalled")
    finally:
        sender.finish()
        producer.close()
    assert sender.failed == []
    after = [r for _, r in sender.ok[mark:]]
    counts = {str(p): sum(1 for r in after if r.partition == p)
              for p in [Partition(b, q) for b in (0, 1) for q in (0, 1)]}
    print(f"\nsends after the new broker joined, per partition: {counts}")
    assert all(n > 0 for n in counts.values()), counts
    # What the new broker acknowledged is there, at the offsets it gave.
    for partition in (0, 1):
        stored = read_partition(second.port, TOPIC, partition)
        for payload, r in sender.ok:
            if r.partition == Partition(1, partition):
                assert stored[r.offset] == (r.msg_id, payload)
    assert first.alive()


# ---- 5. two groups each receive every message -------------------------------------------------


def test_two_groups_each_receive_every_message(brokers, zk_connect, zk_client, tmp_path):
    start_brokers(brokers, zk_connect)
    partitions = partition_strings((0, 1))
    group_a = start_consumers(tmp_path, zk_connect, "ga", ["a0", "a1"])
    group_b = start_consumers(tmp_path, zk_connect, "gb", ["b0"])
    producer = ProducerProc(tmp_path / "clients", zk=zk_connect, topic=TOPIC, count=3000,
                            prefix="two")
    try:
        wait_balanced(zk_client, "ga", group_a, partitions)
        wait_balanced(zk_client, "gb", group_b, partitions)
        producer.start()
        assert producer.wait(60) == 0, producer.log_tail()
        results = producer.results()
        assert len(results) == 3000
        assert [r for r in results if r[0] != "ok"] == []
        payloads = {r[2].encode() for r in results}
        for procs in (group_a, group_b):
            wait_until(lambda: set(all_payloads(procs)) >= payloads, timeout_s=30,
                       message=lambda: f"{procs[0].group}: missing "
                                       f"{len(payloads - set(all_payloads(procs)))}")
        # Nobody left or joined after the start: each group received each message exactly once.
        for procs in (group_a, group_b):
            received = all_payloads(procs)
            assert len(received) == len(set(received)) == 3000
        # Group a split the partitions, group b's only consumer got all four.
        assert {p for p, _, _ in group_b[0].records()} == set(partitions)
        a_parts = [{p for p, _, _ in proc.records()} for proc in group_a]
        assert a_parts[0].isdisjoint(a_parts[1]) and a_parts[0] | a_parts[1] == set(partitions)
    finally:
        stop_all(group_a + group_b + [producer])


# ---- 6. a restarted consumer resumes from its committed offset ---------------------------------


def test_restarted_consumer_resumes_from_committed_offset(brokers, zk_connect, zk_client,
                                                          tmp_path):
    start_brokers(brokers, zk_connect)
    total = 2000
    with Producer(zk_connect) as producer:
        payloads = [b"resume-%06d" % i for i in range(total)]
        sent = produce(producer, payloads)
    record_bytes = HEADER_BYTES + len(payloads[0])
    # Small fetches and one batch per poll: the first run stops part-way through.
    first = ConsumerProc(tmp_path / "clients", zk=zk_connect, group="g", topic=TOPIC,
                         consumer_id="c0", name="first", max_records=600, fetch_bytes=2048,
                         max_batches=1)
    second = ConsumerProc(tmp_path / "clients", zk=zk_connect, group="g", topic=TOPIC,
                          consumer_id="c0", name="second")
    try:
        first.start()
        assert first.wait(60) == 0, first.log_tail()
        assert first.state()["closed"] is True
        before = first.records()
        assert 600 <= len(before) < total, len(before)
        assert len({p for _, _, p in before}) == len(before)
        committed = committed_offsets(zk_client, "g", TOPIC)
        # The committed offset of each partition is the position after the last record the
        # first run received there (msgId: that record's id).
        last = {}
        for partition, offset, payload in before:
            last[partition] = max(last.get(partition, -1), offset)
        assert set(committed) == set(last)
        for partition, offset in last.items():
            payload = next(p for q, o, p in before if (q, o) == (partition, offset))
            assert committed[partition] == (sent[payload].msg_id, offset + record_bytes)
        assert zk_client.get_children("/meta/consumers/g/ids") == []

        second.start()
        wait_until(lambda: len(second.records()) >= total - len(before), timeout_s=30,
                   message=lambda: f"second run has {len(second.records())} of "
                                   f"{total - len(before)}")
        after = second.records()
        # It got the rest, and nothing before the committed offsets again (no duplicates).
        assert {p for _, _, p in before} | {p for _, _, p in after} == set(payloads)
        assert {p for _, _, p in before}.isdisjoint(p for _, _, p in after)
        assert len(after) == total - len(before)
        for partition, offset, _ in after:
            assert offset >= committed.get(partition, (-1, 0))[1]
        firsts = {}
        for partition, offset, _ in after:
            firsts.setdefault(partition, offset)
        for partition, (_, offset) in committed.items():
            if partition in firsts:
                assert firsts[partition] == offset
    finally:
        stop_all([first, second])


# ---- 7. clear typed errors ---------------------------------------------------------------------


def test_no_zookeeper_is_a_zookeeper_error_quickly():
    dead = f"127.0.0.1:{free_port()}"
    for make in (lambda: Producer(dead, zk_timeout_s=2.0),
                 lambda: Consumer(dead, group="g", topics=[TOPIC], zk_timeout_s=2.0)):
        began = time.monotonic()
        with pytest.raises(ZooKeeperError, match="cannot connect to ZooKeeper"):
            make()
        assert time.monotonic() - began < 5.0


def test_no_broker_for_the_topic_is_a_no_broker_error_quickly(zk_connect):
    with Producer(zk_connect) as producer:
        began = time.monotonic()
        with pytest.raises(NoBrokerError, match=f"no aviable partition for topic {TOPIC}"):
            producer.send(TOPIC, b"x")
        with pytest.raises(NoBrokerError):
            producer.send_sync(TOPIC, b"x")
        with pytest.raises(NoBrokerError):
            producer.send_batch(TOPIC, [b"x", b"y"])
        assert time.monotonic() - began < 2.0


def test_message_too_large_and_closed_producer_are_typed_errors(brokers, zk_connect):
    broker = brokers("b0", zk_connect=zk_connect, broker_id=0, workers=1,
                     topics={TOPIC: {"numPartitions": PARTS_PER_BROKER}})
    producer = Producer(zk_connect, max_message_bytes=1000)
    try:
        with pytest.raises(MessageTooLargeError,
                           match="1001 bytes is larger than the limit of 1000"):
            producer.send(TOPIC, b"x" * 1001)
        with pytest.raises(MessageTooLargeError):
            producer.send_batch(TOPIC, [b"ok", b"x" * 1001])
        with pytest.raises(InvalidArgumentError, match="bytes-like, got str"):
            producer.send(TOPIC, "text")  # refused here, not in the sender with a whole batch
        with pytest.raises(InvalidArgumentError, match="2 values but 1 attributes"):
            producer.send_batch(TOPIC, [b"a", b"b"], attributes=["only one"])
        ok = producer.send_sync(TOPIC, b"x" * 1000)  # the limit itself is fine
        stored = read_partition(broker.port, TOPIC, ok.partition.partition)
        assert stored[ok.offset][1] == b"x" * 1000
    finally:
        producer.close()
    with pytest.raises(ProducerClosedError):
        producer.send(TOPIC, b"late")
    with pytest.raises(ProducerClosedError):
        producer.send_batch(TOPIC, [b"late"])
    with Producer(zk_connect) as default:
        with pytest.raises(MessageTooLargeError):
            default.send(TOPIC, b"x" * (MESSAGE_BYTES_MAX_DEFAULT + 1))
    assert all(issubclass(e, MetaqError) for e in (
        ZooKeeperError, NoBrokerError, MessageTooLargeError, ProducerClosedError))


# ---- MessageFuture / BatchResult contents ------------------------------------------------------


def test_send_results_match_what_get_returns(brokers, zk_connect):
    broker = brokers("b0", zk_connect=zk_connect, broker_id=0, workers=1,
                     topics={TOPIC: {"numPartitions": PARTS_PER_BROKER}})
    with Producer(zk_connect) as producer:
        called = []
        futures = [producer.send(TOPIC, b"single-%d" % i) for i in range(6)]
        futures[0].add_done_callback(called.append)
        producer.flush(30)
        assert all(isinstance(f, MessageFuture) and f.done() and f.exception() is None
                   for f in futures)
        assert called == [futures[0]]
        results = [f.result() for f in futures]
        # MetaQ's round robin: the first pick is index 1 of [0-0, 0-1], then alternating.
        assert [str(r.partition) for r in results] == ["0-1", "0-0"] * 3
        assert all(isinstance(r, SendResult) and r.topic == TOPIC for r in results)
        assert len({r.msg_id for r in results}) == 6

        values = [b"a", b"bb", b"ccc", b"dddd"]
        batch = producer.send_batch(TOPIC, values, partition="0-1").result(30)
        assert isinstance(batch, BatchResult) and len(batch) == 4
        assert batch.partition == Partition(0, 1) and batch.topic == TOPIC
        offsets = [int(o) for o in batch.offsets]
        # Consecutive records: each starts where the previous one ends.
        assert [b - a for a, b in zip(offsets, offsets[1:])] == [HEADER_BYTES + len(v)
                                                                 for v in values[:-1]]
        assert [r.offset for r in batch] == offsets
        assert offsets[0] == max(r.offset + HEADER_BYTES + 8 for r in results
                                 if r.partition == Partition(0, 1))

    stored = {p: read_partition(broker.port, TOPIC, p) for p in (0, 1)}
    for i, r in enumerate(results):
        assert stored[r.partition.partition][r.offset] == (r.msg_id, b"single-%d" % i)
    for value, r in zip(values, batch):
        assert stored[1][r.offset] == (r.msg_id, value)
    assert sum(len(s) for s in stored.values()) == 10
