"""MetaQ's asynchronous slave (issue 14): a broker with the master's brokerId and a slaveId
copies every partition of its master as it lies. Real ZooKeeper, real broker processes.

* the slave's ZooKeeper nodes are MetaQ's (``ids/<id>/slave<n>``, ``<id>-s<n>`` in the three
  topic trees), never the master's;
* after a load run with small segments (several rolls per partition), its data files are
  byte-identical to the master's, file for file, although master and slave run different
  worker counts (so a partition is copied between workers that own it under different layouts);
* a put to the slave is refused with 503 naming its master; gets are served;
* a consumer group reading the topic goes on from the slave after the master is SIGKILLed (the
  slave, in sync, takes over as master after the old master's session expires; MetaQ's
  consumers read from a slave as long as no master is registered), and gets every message
  exactly where the master had it (same offsets), nothing skipped;
* a slave restarted over its data resumes from its own end, and a partition the master created
  meanwhile reaches it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from metaq_fast.client.consumer import Consumer
from metaq_fast.client.producer import Producer
from metaq_fast.zk import paths
from tests.brokers import WireClient
from tests.helpers import wait_until

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]

TOPIC = "repl"
SYSTEM = {"maxSegmentSize": "65536", "unflushThreshold": "1000", "dashboardHttpPort": "0"}


@pytest.fixture
def pairs():
    """Stops each pair's slave before its master, also when the test fails (a slave in sync
    takes over when its master stops, and would write to ZooKeeper during the teardown)."""
    started = []
    yield started
    for master, slave in started:
        slave.stop()
        master.stop()


def start_pair(brokers, zk_connect: str, master_workers: int = 2, slave_workers: int = 1,
               pairs=None, properties: bool = False):
    """A master and its slave 1; ``properties``: the slave from MetaQ's async_slave.properties
    (``--slave FILE``) instead of ``--slave-id``."""
    topics = {TOPIC: {"numPartitions": 3}, "other": {"numPartitions": 1}}
    master = brokers("master", zk_connect=zk_connect, broker_id=0, workers=master_workers,
                     topics=topics, system=SYSTEM)
    slave = brokers("slave", start_now=False, zk_connect=zk_connect, broker_id=0,
                    workers=slave_workers, topics=topics, system=SYSTEM)
    if pairs is not None:
        pairs.append((master, slave))
    if properties:
        path = slave.directory / "async_slave.properties"
        path.write_bytes("# MetaQ's metaslave plugin file\nslaveId=1\nslaveGroup=meta-slave-group\n"
                         "slaveMaxDelayInMills=500\nautoSyncMasterConfig=false\n".encode("gbk"))
        slave.args = ("--slave", str(path))
    else:
        slave.args = ("--slave-id", "1")
    slave.start()
    return master, slave


def produce(zk_connect: str, count: int, topic: str = TOPIC, prefix: bytes = b"m") -> dict:
    """``count`` messages round robin; {(partition string, offset): payload}."""
    sent = {}
    with Producer(zk_connect) as producer:
        futures = [(b"%s-%06d" % (prefix, i), producer.send(topic, b"%s-%06d" % (prefix, i)))
                   for i in range(count)]
        producer.flush(60)
        for payload, future in futures:
            result = future.result(30)
            sent[(str(result.partition), result.offset)] = payload
    return sent


def data_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.meta"))}


def wait_identical(master, slave, timeout_s: float = 60.0) -> dict[str, bytes]:
    def same():
        a, b = data_files(master.data_path), data_files(slave.data_path)
        return a if a == b else None
    return wait_until(same, timeout_s=timeout_s, interval_s=0.2,
                      message=lambda: f"master {sorted(data_files(master.data_path))} slave "
                                      f"{sorted(data_files(slave.data_path))}")


def test_slave_nodes_files_puts_and_restart(brokers, zk_connect, zk_client, pairs):
    master, slave = start_pair(brokers, zk_connect, pairs=pairs)
    root = "/meta"
    wait_until(lambda: zk_client.exists(paths.broker_slave_path(root, 0, 1)), timeout_s=10)
    data, _ = zk_client.get(paths.broker_slave_path(root, 0, 1))
    assert data.decode() == slave.url
    assert zk_client.get(paths.broker_master_path(root, 0))[0].decode() == master.url
    assert sorted(zk_client.get_children(paths.broker_id_path(root, 0))) == \
        ["master", "master_config_checksum", "slave1"]

    sent = produce(zk_connect, 12000)
    files = wait_identical(master, slave)
    assert len(files) >= 3 * 2, files.keys()  # every partition rolled at least once
    for tree, builder in (("topics", paths.topic_broker_path),
                          ("topics-pub", paths.topics_pub_broker_path),
                          ("topics-sub", paths.topics_sub_broker_path)):
        children = zk_client.get_children(f"{root}/brokers/{tree}/{TOPIC}")
        assert sorted(children) == ["0-m", "0-s1"], (tree, children)
        data = zk_client.get(builder(root, TOPIC, 0, 1))[0]
        expected = b"3" if tree == "topics" else json.dumps(
            {"numParts": 3, "broker": "0-s1"}, separators=(",", ":")).encode()
        assert data == expected, (tree, data)

    check_lag_figures(master, slave, zk_connect)
    client = WireClient(slave.port)
    reply = client.request(b"put %s 0 5 0 -1 1\r\nhello" % TOPIC.encode())
    assert reply.code == 503 and b"slave" in bytes(reply.body) and \
        master.url.encode() in bytes(reply.body), reply
    (partition, offset), payload = next(iter(sent.items()))
    reply = client.request(b"get %s g %s %d 4096 2\r\n" % (
        TOPIC.encode(), partition.split("-")[1].encode(), offset))
    assert payload in bytes(reply.data)
    client.close()

    # a restarted slave resumes from its own end; a partition new on the master reaches it
    assert slave.stop() == 0
    sent.update(produce(zk_connect, 3000, prefix=b"gap"))
    produce(zk_connect, 10, topic="other")
    slave.start()
    files = wait_identical(master, slave)
    assert any(name.startswith("other-0/") for name in files)
    assert "cut back" not in slave.log_text()
    assert slave.stop() == 0  # first: a slave in sync takes over when its master stops
    assert master.stop() == 0


def stats(broker, item: str) -> dict[str, str]:
    client = WireClient(broker.port)
    try:
        body = bytes(client.request(b"stats %s 7\r\n" % item.encode()).body).decode()
    finally:
        client.close()
    return dict(line.split(" ", 1) for line in body.splitlines() if " " in line)


def check_lag_figures(master, slave, zk_connect: str) -> None:
    """Replication lag in stats, /metrics and metaq-admin, once the slave has it all."""
    def settled():
        mine, theirs = stats(slave, "replication"), stats(master, "replication")
        ok = (mine.get("lag_bytes") == "0" and theirs.get("in_sync_replicas") == "m,s1"
              and "lag_bytes=0" in theirs.get("follower_s1", ""))
        return (mine, theirs) if ok else None
    mine, theirs = wait_until(settled, timeout_s=20, interval_s=0.2,
                              message=lambda: f"{stats(slave, 'replication')} "
                                              f"{stats(master, 'replication')}")
    assert (mine["role"], mine["replica"], mine["leader"]) == ("follower", "s1", master.url)
    assert (theirs["role"], theirs["replica"]) == ("master", "m")
    for p in range(3):
        assert mine[f"partition_{TOPIC}-{p}"].startswith("lag_bytes=0 lag_ms="), mine
    assert stats(slave, "")["slave"] == "true" and stats(master, "")["slave"] == "false"
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{slave.info['dashboard_port']}/metrics", timeout=10).read().decode()
    assert f'metaq_partition_replica_lag_bytes{{partition="0",topic="{TOPIC}"}} 0.0' in metrics
    assert 'metaq_replication_info{isr="",leader="%s",replica="s1",role="follower"} 1.0' % \
        master.url in metrics
    copied = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith("metaq_partition_messages_replicated_total{"))
    assert copied >= 12000
    out = subprocess.run([sys.executable, "-m", "metaq_fast.cli", "admin", "-z", zk_connect,
                          "--json", "replication"], capture_output=True, text=True, timeout=60)
    rows = json.loads(out.stdout)
    assert {(r["node"], r["replica"], r["role"], r.get("lag_bytes")) for r in rows} == \
        {("master", "m", "master", None), ("slave1", "s1", "follower", 0)}, rows


def test_group_goes_on_from_the_slave_after_the_master_is_killed(brokers, zk_connect, pairs):
    master, slave = start_pair(brokers, zk_connect, master_workers=1, slave_workers=2,
                               pairs=pairs, properties=True)
    sent = produce(zk_connect, 6000)
    wait_identical(master, slave)
    got: dict[tuple[str, int], bytes] = {}
    consumer = Consumer(zk_connect, group="g", topics=[TOPIC], commit_interval_ms=200,
                        max_fetch_delay_ms=200, fetch_bytes=4096)  # ~150 records a fetch
    try:
        deadline = time.monotonic() + 60
        while len(got) < len(sent) // 2 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_s=0.5, max_batches=1):
                for record in batch:
                    got[(record.partition, record.offset)] = record.value
        assert len(got) >= len(sent) // 2
        master.kill()  # SIGKILL: its session ends after the timeout, its nodes with it
        while len(got) < len(sent) and time.monotonic() < deadline + 60:
            for batch in consumer.poll(timeout_s=0.5):
                for record in batch:
                    got[(record.partition, record.offset)] = record.value
    finally:
        consumer.close()
    assert got == sent  # every message, at the offset the master gave it, nothing skipped
    client = WireClient(slave.port)
    stats = bytes(client.request(b"stats\r\n").body).decode()
    client.close()
    gets = int(next(line.split()[1] for line in stats.splitlines() if line.startswith("cmd_get")))
    assert gets > 0, stats  # the second half came from the slave
    slave.stop()
