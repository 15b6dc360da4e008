"""``metaq-server --broker-id N`` overrides ``brokerId`` of server.ini, end to end.

A real broker whose server.ini says ``brokerId=3`` is started with ``--broker-id 7``: ZooKeeper
holds ``/meta/brokers/ids/7/master`` (its URL) and the topic nodes ``7-m``, nothing under id 3;
every message id it issues carries broker id 7 in MetaQ's IdWorker layout
(``((millis - 1303895660503) << 22) | brokerId << 12 | sequence``, decoded here by hand, not with
``metaq_fast.storage.ids``), whichever of its two workers stored the message; a producer finds
partitions ``7-0``/``7-1`` and the stored ids match what it was told. Real ZooKeeper (conftest
fixtures), a real broker process (``brokers`` fixture), the real client library.
"""

from __future__ import annotations

import json
import time

import pytest

from metaq_fast.client.producer import Producer
from metaq_fast.zk.paths import Partition
from tests.brokers import WireClient
from tests.clientproc import read_partition

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

TOPIC = "ids"
INI_BROKER_ID = 3
CLI_BROKER_ID = 7
MSG_ID_EPOCH_MS = 1303895660503  # MetaQ IdWorker's twepoch (metaq-protocol.md, message ids)


def id_broker(msg_id: int) -> int:
    return (msg_id >> 12) & 0x3FF


def id_millis(msg_id: int) -> int:
    return (msg_id >> 22) + MSG_ID_EPOCH_MS


def test_broker_id_option_overrides_the_ini(brokers, zk_connect, zk_client):
    broker = brokers("b", start_now=False, zk_connect=zk_connect, broker_id=INI_BROKER_ID,
                     workers=2, topics={TOPIC: {"numPartitions": 2}})
    began_ms = time.time() * 1000
    broker.start(extra_args=["--broker-id", str(CLI_BROKER_ID)])
    assert f"brokerId={INI_BROKER_ID}\n" in broker.config_path.read_text()  # the ini says 3
    assert json.loads(broker.ready_path.read_text())["broker_id"] == CLI_BROKER_ID

    # ZooKeeper: registered as 7, with its URL; nothing at all under 3.
    data, stat = zk_client.get(f"/meta/brokers/ids/{CLI_BROKER_ID}/master")
    assert data.decode() == broker.url
    assert broker.url.endswith(f":{broker.port}")
    assert stat.ephemeralOwner != 0
    assert zk_client.get_children("/meta/brokers/ids") == [str(CLI_BROKER_ID)]
    assert zk_client.exists(f"/meta/brokers/ids/{INI_BROKER_ID}") is None
    for kind in ("topics-pub", "topics-sub"):
        assert zk_client.get_children(f"/meta/brokers/{kind}/{TOPIC}") == [f"{CLI_BROKER_ID}-m"]
        data, _ = zk_client.get(f"/meta/brokers/{kind}/{TOPIC}/{CLI_BROKER_ID}-m")
        assert json.loads(data) == {"numParts": 2, "broker": f"{CLI_BROKER_ID}-m"}

    # Message ids: plain puts to both partitions (two workers, each its own sequence slot).
    client = WireClient(broker.port)
    put_ids = {}
    try:
        for i in range(8):
            partition = i % 2
            body = b"plain-%d" % i
            reply = client.request(b"put %s %d %d 0 -1 %d\r\n%s" % (
                TOPIC.encode(), partition, len(body), i + 1, body))
            assert reply.code == 200, bytes(reply.body)
            msg_id, part, offset = (int(x) for x in bytes(reply.body).split(b" "))
            assert part == partition
            put_ids[(partition, offset)] = (msg_id, body)
        stats = bytes(client.request(b"stats  99\r\n").body).decode()
    finally:
        client.close()
    assert f"broker_id {CLI_BROKER_ID}" in stats.splitlines()
    done_ms = time.time() * 1000

    # The client library: partitions of broker 7, ids of broker 7.
    with Producer(zk_connect) as producer:
        assert producer.partitions_for(TOPIC) == [Partition(CLI_BROKER_ID, 0),
                                                  Partition(CLI_BROKER_ID, 1)]
        futures = [(b"lib-%d" % i, producer.send(TOPIC, b"lib-%d" % i)) for i in range(20)]
        producer.flush(30)
        results = [(payload, future.result()) for payload, future in futures]
    assert {r.partition for _, r in results} == {Partition(CLI_BROKER_ID, 0),
                                                 Partition(CLI_BROKER_ID, 1)}

    issued = [msg_id for msg_id, _ in put_ids.values()] + [r.msg_id for _, r in results]
    assert len(set(issued)) == len(issued) == 28
    assert {id_broker(i) for i in issued} == {CLI_BROKER_ID}, [hex(i) for i in issued]
    # The time part is the wall clock of the puts (the id layout is MetaQ's, not just the bits).
    assert all(began_ms - 5000 <= id_millis(i) <= done_ms + 5000
               for i, _ in put_ids.values()), [id_millis(i) for i, _ in put_ids.values()]
    assert all(began_ms - 5000 <= id_millis(r.msg_id) <= time.time() * 1000 + 5000
               for _, r in results)

    # What the broker stored carries the same ids.
    stored = {p: read_partition(broker.port, TOPIC, p) for p in (0, 1)}
    for (partition, offset), (msg_id, body) in put_ids.items():
        assert stored[partition][offset] == (msg_id, body)
    for payload, r in results:
        assert stored[r.partition.partition][r.offset] == (r.msg_id, payload)
