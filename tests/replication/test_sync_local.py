"""Synchronous replication on loopback (issue 14): a master and a slave from the same ini with
``minInSyncReplicas=2``.

* with group commit (``unflushThreshold=0``) a lone put is acknowledged in a few milliseconds:
  the flush that makes it visible wakes the slave's waiting fetch (found in review: only appends
  did, so a lone put waited for the fetch's 500 ms long poll to end);
* while the slave is stopped (SIGSTOP) puts fail with 503 "not enough in-sync replicas" within
  the lag bound, and succeed again once it is back and has rejoined.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time

import pytest

from tests.brokers import WireClient
from tests.helpers import wait_until

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]


def start(brokers, zk_connect, system):
    topics = {"s": {"numPartitions": 1}}
    master = brokers("master", zk_connect=zk_connect, broker_id=0, workers=1, topics=topics,
                     system=system)
    slave = brokers("slave", start_now=False, zk_connect=zk_connect, broker_id=0, workers=1,
                    topics=topics, system=system, args=("--slave-id", "0"))
    slave.start()
    return master, slave


def isr(zk_client) -> list[str]:
    data = zk_client.exists("/meta/replication/0") and zk_client.get("/meta/replication/0")[0]
    return json.loads(data)["isr"] if data else []


def put(client, i: int):
    began = time.monotonic()
    reply = client.request(b"put s 0 5 0 -1 %d\r\nhello" % i, timeout_s=10)
    return reply, time.monotonic() - began


def test_group_commit_sync_puts_are_not_held_by_the_long_poll(brokers, zk_connect, zk_client):
    master, slave = start(brokers, zk_connect, {"minInSyncReplicas": "2", "unflushThreshold": "0",
                                                "replicaLagMaxMs": "2000"})
    try:
        wait_until(lambda: isr(zk_client) == ["m", "s0"], timeout_s=30)
        client = WireClient(master.port)
        times = []
        for i in range(20):
            reply, seconds = put(client, i)
            assert reply.code == 200, reply
            times.append(seconds)
            time.sleep(0.05)  # alone: the slave's fetch is parked when it arrives
        client.close()
        print(f"\nlone sync put with group commit: median {statistics.median(times) * 1e3:.1f} ms,"
              f" max {max(times) * 1e3:.1f} ms")
        assert statistics.median(times) < 0.1, times
    finally:
        slave.stop()


def test_puts_fail_clearly_while_the_slave_is_stopped(brokers, zk_connect, zk_client):
    master, slave = start(brokers, zk_connect, {"minInSyncReplicas": "2",
                                                "replicaLagMaxMs": "1000"})
    try:
        wait_until(lambda: isr(zk_client) == ["m", "s0"], timeout_s=30)
        client = WireClient(master.port)
        assert put(client, 1)[0].code == 200
        for pid in [slave.pid, *slave.worker_pids()]:
            os.kill(pid, signal.SIGSTOP)
        try:
            reply, seconds = put(client, 2)
            assert reply.code == 503 and b"in-sync replicas" in bytes(reply.body), reply
            assert seconds < 2 * 1.0 + 1.5, seconds
            reply, seconds = put(client, 3)
            assert reply.code == 503 and seconds < 0.5
        finally:
            for pid in [slave.pid, *slave.worker_pids()]:
                os.kill(pid, signal.SIGCONT)
        wait_until(lambda: isr(zk_client) == ["m", "s0"], timeout_s=30)
        assert put(client, 4)[0].code == 200
        client.close()
    finally:
        slave.stop()
