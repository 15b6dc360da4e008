"""A broker restarted over its data directory comes back exactly as it was, in ZooKeeper too.

Issue 11.1: a topic that had data when the broker stopped was reported by the workers during
recovery, before the ZooKeeper registry existed, remembered as published, and never registered:
``brokers/topics*/<t>/<id>-m`` did not come back, so producers never sent to that broker again.
Checked here on the nodes themselves (literal paths, as MetaQ's tools read them), after SIGTERM
and start, after kill -9 and start, after a server-side session expiry, and through three
restarts in a row with a producer running across them.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from metaq_fast.client.producer import Producer
from tests.brokers import WireClient
from tests.clientproc import Sender, read_partition
from tests.helpers import wait_until

pytestmark = [pytest.mark.zk, pytest.mark.timeout(240)]

NODES_BACK_S_MAX = 2.0  # the bound: every node back within 2 s of the broker's start
SESSION_EXPIRY_S = 4.0 + 6.0  # zk.zkSessionTimeoutMs of tests.brokers.server_ini, plus slack


def topic_nodes(broker_id: int, topic: str) -> list[str]:
    return [f"/meta/brokers/{kind}/{topic}/{broker_id}-m"
            for kind in ("topics", "topics-pub", "topics-sub")]


def broker_nodes(broker_id: int, topics) -> list[str]:
    found = [f"/meta/brokers/ids/{broker_id}/master"]
    for topic in topics:
        found += topic_nodes(broker_id, topic)
    return found


def missing(zk, node_paths) -> list[str]:
    return [path for path in node_paths if zk.exists(path) is None]


def put(port: int, topic: str, partition: int, body: bytes) -> int:
    client = WireClient(port)
    try:
        reply = client.request(b"put %s %d %d 0 -1 1\r\n%s" % (
            topic.encode(), partition, len(body), body))
        assert reply.code == 200, (reply.code, bytes(reply.body))
        return int(bytes(reply.body).split()[2])
    finally:
        client.close()


def test_topics_with_data_are_registered_after_a_restart(brokers, zk_connect, zk_client):
    """SIGTERM then start over the same data: every topic node is back, with its data."""
    topics = {"test": {"numPartitions": 2}, "other": {"numPartitions": 1},
              "pat*": {"numPartitions": 3}}
    broker = brokers("b0", zk_connect=zk_connect, topics=topics)
    for topic, partition in (("test", 1), ("other", 0), ("pat-one", 2)):
        put(broker.port, topic, partition, b"kept over a restart")
    names = ["test", "other", "pat-one"]
    wait_until(lambda: not missing(zk_client, broker_nodes(0, names)), timeout_s=10,
               message="topics not registered before the restart")
    assert broker.stop() == 0
    assert missing(zk_client, broker_nodes(0, names)) == broker_nodes(0, names)

    broker.start()
    wait_until(lambda: not missing(zk_client, broker_nodes(0, names)), timeout_s=10,
               message=lambda: f"missing after restart: {missing(zk_client, broker_nodes(0, names))}")
    for topic, parts in (("test", 2), ("other", 1), ("pat-one", 3)):
        data, _ = zk_client.get(f"/meta/brokers/topics/{topic}/0-m")
        assert data == str(parts).encode(), topic
        data, _ = zk_client.get(f"/meta/brokers/topics-pub/{topic}/0-m")
        assert json.loads(data) == {"numParts": parts, "broker": "0-m"}, topic
    # The data is still served, and the broker takes puts to the same topics again.
    assert read_partition(broker.port, "test", 1)
    put(broker.port, "test", 1, b"after the restart")


def test_a_topic_with_data_but_no_longer_configured_is_registered(brokers, zk_connect, zk_client):
    """A topic found on disk but gone from server.ini is published with the system defaults
    (MetaQ keeps serving what it stores)."""
    broker = brokers("b0", zk_connect=zk_connect,
                     topics={"test": {"numPartitions": 1}, "old": {"numPartitions": 1}})
    put(broker.port, "old", 0, b"stored under a topic about to be unconfigured")
    assert broker.stop() == 0
    broker.ini["topics"] = {"test": {"numPartitions": 1}}
    broker.start()
    wait_until(lambda: not missing(zk_client, broker_nodes(0, ["test", "old"])), timeout_s=10,
               message=lambda: f"missing: {missing(zk_client, broker_nodes(0, ['test', 'old']))}")
    data, _ = zk_client.get("/meta/brokers/topics/old/0-m")
    assert data == b"1"  # numPartitions=1 of [system] in tests.brokers.server_ini


def test_topics_with_data_come_back_after_kill_9_and_after_a_session_expiry(
        brokers, zk_connect, zk_client):
    """kill -9, start again over the data (registered once the old session is gone); then the
    new session expires on the server (supervisor stopped past the session timeout): the topic
    that only has data here (a pattern section's name) is registered again by a new session."""
    topics = {"test": {"numPartitions": 1}, "pat*": {"numPartitions": 2}}
    broker = brokers("b0", zk_connect=zk_connect, topics=topics)
    put(broker.port, "pat-x", 1, b"survives kill -9")
    nodes = broker_nodes(0, ["test", "pat-x"])
    wait_until(lambda: not missing(zk_client, nodes), timeout_s=10, message="not registered")
    broker.kill()
    wait_until(lambda: missing(zk_client, nodes) == nodes, timeout_s=SESSION_EXPIRY_S,
               message="the killed broker's session did not expire")
    broker.start()
    wait_until(lambda: not missing(zk_client, nodes), timeout_s=10,
               message=lambda: f"missing after kill -9 and start: {missing(zk_client, nodes)}")
    (session,) = {zk_client.exists(path).ephemeralOwner for path in nodes}

    os.kill(broker.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: missing(zk_client, nodes) == nodes, timeout_s=SESSION_EXPIRY_S,
                   message="the stopped broker's session did not expire")
    finally:
        os.kill(broker.pid, signal.SIGCONT)

    def registered_by_a_new_session() -> bool:
        stats = [zk_client.exists(path) for path in nodes]
        return all(s is not None and s.ephemeralOwner not in (0, session) for s in stats)

    wait_until(registered_by_a_new_session, timeout_s=15,
               message=lambda: f"not registered again after expiry: {missing(zk_client, nodes)}")
    assert read_partition(broker.port, "pat-x", 1)


def test_three_restarts_under_a_running_producer(brokers, zk_connect, zk_client):
    """The issue's figure: a broker holding data in 3 topics, restarted three times in a row
    (SIGTERM, start over its data) while a producer sends to both brokers of the cluster: every
    time all its nodes are back within 2 s of its start, and the producer sends to it again.
    Nothing acknowledged is lost."""
    names = ["alpha", "beta", "gamma"]
    topics = {name: {"numPartitions": 2} for name in names}
    victim = brokers("b0", zk_connect=zk_connect, broker_id=0, workers=1, topics=topics)
    brokers("b1", zk_connect=zk_connect, broker_id=1, workers=1, topics=topics)
    for name in names:
        put(victim.port, name, 0, b"data before the restarts")
    nodes = broker_nodes(0, names)
    wait_until(lambda: not missing(zk_client, nodes), timeout_s=10, message="not registered")

    producer = Producer(zk_connect, request_timeout_s=5.0)
    sender = Sender(producer, "alpha", b"restarts", chunk=10, pace_s=0.01, max_messages=200_000,
                    max_s=180)
    sender.start()
    back_s: list[float] = []
    try:
        wait_until(lambda: _sent_to(sender, 0, since=0), timeout_s=20,
                   message="the producer never sent to broker 0")
        for _ in range(3):
            assert victim.stop() == 0
            # Stopped: whatever the producer gets acknowledged from now on went elsewhere, until
            # the broker is back.
            assert missing(zk_client, nodes) == nodes
            began = time.monotonic()
            victim.start()
            wait_until(lambda: not missing(zk_client, nodes), timeout_s=10,
                       message=lambda: f"missing after restart: {missing(zk_client, nodes)}")
            back_s.append(time.monotonic() - began)
            acked_before = len(sender.ok)
            wait_until(lambda: _sent_to(sender, 0, since=acked_before), timeout_s=20,
                       message="the producer did not send to the restarted broker again")
    finally:
        sender.finish()
        producer.close()
    print(f"nodes back after {', '.join(f'{s:.2f}' for s in back_s)} s; "
          f"{len(sender.ok)} sends acknowledged, {len(sender.failed)} failed")
    assert max(back_s) <= NODES_BACK_S_MAX, back_s
    # Every acknowledged send is stored where its answer said (both brokers, every partition).
    stored = {}
    for port, broker_id in ((victim.port, 0), (brokers_port(zk_client, 1), 1)):
        for partition in (0, 1):
            for offset, (_, payload) in read_partition(port, "alpha", partition).items():
                stored[(broker_id, partition, offset)] = payload
    lost = [(payload, result) for payload, result in sender.ok
            if stored.get((result.partition.broker_id, result.partition.partition,
                           result.offset)) != payload]
    assert lost == [], lost[:5]


def _sent_to(sender: Sender, broker_id: int, since: int) -> bool:
    """Whether one of ``sender``'s acknowledgements after the first ``since`` came from
    ``broker_id`` (the sender appends them in order)."""
    return any(result.partition.broker_id == broker_id for _, result in sender.ok[since:])


def brokers_port(zk_client, broker_id: int) -> int:
    data, _ = zk_client.get(f"/meta/brokers/ids/{broker_id}/master")
    return int(data.decode().rsplit(":", 1)[1])
