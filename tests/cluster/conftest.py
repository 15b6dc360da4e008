"""Fixtures of the cluster scenarios: a ``make_cluster`` factory whose clusters are always closed
(every process stopped by PID, every namespace deleted), also when the test fails."""

from __future__ import annotations

import pytest

from tests.helpers import skip_or_fail

from tests.cluster.netns import available


@pytest.fixture
def make_cluster(tmp_path):
    why_not = available()
    if why_not is not None:
        skip_or_fail(f"cluster tests need network namespaces: {why_not}")
    from tests.cluster.harness import Cluster

    made = []

    def make(**kwargs):
        cluster = Cluster(tmp_path / f"cluster{len(made)}", **kwargs)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()
