"""A consumer group picks up the partitions of a broker started after it, without a restart.

Broker 0 (two partitions) serves a group of two consumer processes (``tests.clientproc.
ConsumerProc``): DEFAULT split ``g_c0: 0-0``, ``g_c1: 0-1``. Broker 1 starts with the same topic;
its ``topics-sub`` node makes both consumers rebalance over ``0-0 0-1 1-0 1-1``: ``g_c0: 0-0
0-1``, ``g_c1: 1-0 1-1`` (so ``0-1`` moves from c1 to c0 as well). Messages put to broker 1
before the consumers noticed it and after are all received, by the consumer that owns their
partition now, as are messages put to broker 0 after the change; the consumer processes are the
same ones throughout. Real ZooKeeper, real brokers, the real client library.
"""

from __future__ import annotations

import pytest

from metaq_fast.client.producer import Producer
from metaq_fast.zk.paths import Partition
from tests.clientproc import ConsumerProc, owners, stop_all
from tests.helpers import wait_until

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

TOPIC = "growing"
GROUP = "grow"


def start_broker(brokers, zk_connect: str, broker_id: int):
    return brokers(f"b{broker_id}", zk_connect=zk_connect, broker_id=broker_id, workers=1,
                   topics={TOPIC: {"numPartitions": 2}})


def send(producer: Producer, prefix: bytes, partitions, per_partition: int) -> dict[bytes, str]:
    """``per_partition`` messages pinned to each of ``partitions``: {payload: partition}."""
    futures = []
    for partition in partitions:
        for i in range(per_partition):
            payload = b"%s-%s-%03d" % (prefix, str(partition).encode(), i)
            futures.append((payload, partition, producer.send(TOPIC, payload,
                                                              partition=partition)))
    producer.flush(30)
    for payload, partition, future in futures:
        assert future.result().partition == partition
    return {payload: str(partition) for payload, partition, _ in futures}


def test_consumers_pick_up_a_new_brokers_partitions_without_restart(brokers, zk_connect,
                                                                    zk_client, tmp_path):
    start_broker(brokers, zk_connect, 0)
    procs = [ConsumerProc(tmp_path / "clients", zk=zk_connect, group=GROUP, topic=TOPIC,
                          consumer_id=cid) for cid in ("c0", "c1")]
    c0, c1 = procs
    producer = Producer(zk_connect)
    expected: dict[bytes, str] = {}

    def received() -> dict[bytes, str]:
        return {payload: partition for p in procs for partition, _, payload in p.records()}

    def state() -> str:
        got = received()
        lost = sorted(set(expected) - set(got))
        return (f"owners {owners(zk_client, GROUP, TOPIC)}; reported "
                f"{[p.assignment(TOPIC) for p in procs]}; {len(lost)} missing, e.g. {lost[:4]}")

    try:
        for proc in procs:
            proc.start()
        pids = [p.pid for p in procs]
        wait_until(lambda: owners(zk_client, GROUP, TOPIC) == {"0-0": c0.full_id,
                                                               "0-1": c1.full_id}
                   and [p.assignment(TOPIC) for p in procs] == [["0-0"], ["0-1"]],
                   timeout_s=20, message=state)
        expected |= send(producer, b"before", [Partition(0, 0), Partition(0, 1)], 20)
        wait_until(lambda: set(received()) >= set(expected), timeout_s=20, message=state)

        start_broker(brokers, zk_connect, 1)
        # Right away, before the consumers may have noticed: these must not be skipped.
        wait_until(lambda: Partition(1, 0) in producer.partitions_for(TOPIC), timeout_s=10,
                   message="the producer does not see broker 1")
        expected |= send(producer, b"early", [Partition(1, 0), Partition(1, 1)], 20)

        want = {"0-0": c0.full_id, "0-1": c0.full_id, "1-0": c1.full_id, "1-1": c1.full_id}
        wait_until(lambda: owners(zk_client, GROUP, TOPIC) == want
                   and [p.assignment(TOPIC) for p in procs] == [["0-0", "0-1"], ["1-0", "1-1"]],
                   timeout_s=20, message=state)
        expected |= send(producer, b"after", [Partition(b, p) for b in (0, 1) for p in (0, 1)],
                         20)
        wait_until(lambda: set(received()) >= set(expected), timeout_s=30, message=state)
        assert [p.pid for p in procs] == pids and all(p.alive() for p in procs)
    finally:
        producer.close()
        stop_all(procs)
    assert [p.proc.returncode for p in procs] == [0, 0], [p.log_tail() for p in procs]

    got = received()
    assert {payload: got[payload] for payload in expected} == expected
    assert set(got) == set(expected)  # nothing that was not sent
    # After the change, each consumer received only from what it owns now (or owned before).
    c0_parts = {part for part, _, payload in c0.records()}
    c1_parts = {part for part, _, payload in c1.records()}
    assert c0_parts == {"0-0", "0-1"}
    assert c1_parts == {"0-1", "1-0", "1-1"}
    for part, _, payload in c1.records():
        if part == "0-1":
            assert payload.startswith(b"before-"), payload  # c1 gave 0-1 up at the change
    assert any(payload.startswith(b"early-") for _, _, payload in c1.records())
