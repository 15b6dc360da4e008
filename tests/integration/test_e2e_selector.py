"""A ``Producer`` given a partition selector sends each message where the selector says, across
two real brokers: checked on the brokers themselves, by reading every partition back with plain
MetaQ ``get`` requests (``tests.clientproc.read_partition``), not only through ``SendResult``.

Two selectors: a user-supplied one (a class with ``select``, keyed on ``message.key``, with a
mapping that round robin could not produce) and the library's ``KeyHashSelector`` (``crc32(key)
% len(partitions)``, computed here with ``zlib`` independently of the library). Keys are passed
with ``send(..., key=...)`` and ``send_batch(..., key=...)``; the selector must see the key and the
producer's whole partition list, sorted numerically by (brokerId, partition).

Real ZooKeeper, two real ``metaq-server`` processes (``brokers`` fixture, one worker each).
"""

from __future__ import annotations

import threading
import zlib

import pytest

from metaq_fast.client.producer import Producer
from metaq_fast.client.selector import KeyHashSelector
from metaq_fast.zk.paths import Partition
from tests.clientproc import read_partition, start_brokers

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

TOPIC = "keyed"
PARTS_PER_BROKER = 2
ALL_PARTITIONS = [Partition(b, p) for b in (0, 1) for p in range(PARTS_PER_BROKER)]


class TenantSelector:
    """A user's selector: key ``"tenant-<n>"`` goes to ``partitions[(3 * n + 2) % len]``; a
    message without a key is an error (so a key the producer drops fails loudly)."""

    def __init__(self):
        self.seen: list[tuple[str, list[Partition], object]] = []
        self._lock = threading.Lock()

    def select(self, topic, partitions, message):
        with self._lock:
            self.seen.append((topic, list(partitions), message.key))
        if message.key is None:
            raise ValueError("TenantSelector needs a key")
        n = int(message.key.split("-")[1])
        return partitions[(3 * n + 2) % len(partitions)]


def stored_by_partition(bs: dict) -> dict[Partition, dict[int, tuple[int, bytes]]]:
    return {p: read_partition(bs[p.broker_id].port, TOPIC, p.partition) for p in ALL_PARTITIONS}


def check_placement(bs: dict, expected: dict[bytes, Partition], results: dict) -> None:
    """Every message is stored at the partition ``expected`` names, at the offset and with the
    id its ``SendResult`` gave, and nothing else is stored anywhere."""
    stored = stored_by_partition(bs)
    for payload, want in expected.items():
        result = results[payload]
        assert result.partition == want, (payload, result.partition, want)
        assert stored[want].get(result.offset) == (result.msg_id, payload), (payload, want)
    for partition, records in stored.items():
        here = sorted(payload for _, payload in records.values())
        assert here == sorted(p for p, want in expected.items() if want == partition), partition


def test_user_selector_with_key_decides_the_partition_on_the_brokers(brokers, zk_connect):
    bs = start_brokers(brokers, zk_connect, TOPIC, PARTS_PER_BROKER)
    selector = TenantSelector()
    expected: dict[bytes, Partition] = {}
    results = {}
    with Producer(zk_connect, selector=selector) as producer:
        assert producer.partitions_for(TOPIC) == ALL_PARTITIONS
        futures = []
        for i in range(200):
            tenant = i % 7  # keys repeat: a key always lands in the same place
            payload = b"tenant-%d-msg-%04d" % (tenant, i)
            expected[payload] = ALL_PARTITIONS[(3 * tenant + 2) % 4]
            futures.append((payload, producer.send(TOPIC, payload, key=f"tenant-{tenant}")))
        # A batch is placed by its key as a whole.
        batch_values = [b"batch-tenant-5-%02d" % i for i in range(10)]
        batch = producer.send_batch(TOPIC, batch_values, key="tenant-5")
        producer.flush(60)
        for payload, future in futures:
            results[payload] = future.result()
        for value, result in zip(batch_values, batch.result()):
            expected[value] = ALL_PARTITIONS[(3 * 5 + 2) % 4]
            results[value] = result
    # The selector was asked once per message (and once for the batch), with the key and the
    # full, numerically sorted partition list.
    assert len(selector.seen) == 201
    assert all(topic == TOPIC and parts == ALL_PARTITIONS for topic, parts, _ in selector.seen)
    assert [key for _, _, key in selector.seen[:200]] == [f"tenant-{i % 7}" for i in range(200)]
    assert selector.seen[200][2] == "tenant-5"
    # Each of the four partitions gets some tenants (so the check below covers both brokers).
    assert set(expected.values()) == set(ALL_PARTITIONS)
    check_placement(bs, expected, results)


def test_key_hash_selector_places_keys_by_crc32_on_the_brokers(brokers, zk_connect):
    bs = start_brokers(brokers, zk_connect, TOPIC, PARTS_PER_BROKER)
    keys = [f"customer-{n}".encode() for n in range(40)]
    expected: dict[bytes, Partition] = {}
    with Producer(zk_connect, selector=KeyHashSelector()) as producer:
        futures = []
        for round_ in range(5):
            for key in keys:
                payload = b"%s-order-%d" % (key, round_)
                expected[payload] = ALL_PARTITIONS[zlib.crc32(key) % len(ALL_PARTITIONS)]
                futures.append((payload, producer.send(TOPIC, payload, key=key)))
        producer.flush(60)
        results = {payload: future.result() for payload, future in futures}
    assert set(expected.values()) == set(ALL_PARTITIONS)
    check_placement(bs, expected, results)
