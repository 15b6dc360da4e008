"""Cluster scenarios (issue 13): a real 3-node ZooKeeper ensemble, brokers, producers and two
consumer groups on hosts of their own (network namespaces), a fault in the middle of a bounded
load, and the audit: nothing acknowledged is lost to either group.

Each test prints its audit line (``-s`` shows it; the closing note of issue 13 tabulates them).
"""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.zk, pytest.mark.cluster, pytest.mark.timeout(300)]


def assert_nothing_lost(audit) -> None:
    print(f"\nAUDIT {audit.summary()}")
    assert audit.acked > 0
    for group, result in audit.groups.items():
        assert result.lost == 0, f"group {group} lost {result.lost}: {result.lost_examples}"


def test_rolling_restart_of_every_broker_over_its_data(make_cluster):
    cluster = make_cluster(brokers=2)
    cluster.start_load(producers=2, rate=300, seconds=25)
    time.sleep(4)
    for broker_id, broker in cluster.brokers.items():
        assert broker.stop() == 0
        broker.start()
        cluster.wait_registered(broker_id)
        time.sleep(3)
    assert_nothing_lost(cluster.finish())
