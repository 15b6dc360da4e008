"""Fixtures of the replication tests: the cluster tests' ``make_cluster`` (hosts in network
namespaces, a 3-node ZooKeeper ensemble; tests/cluster/conftest.py)."""

from tests.cluster.conftest import make_cluster  # noqa: F401 - a fixture, used by name
