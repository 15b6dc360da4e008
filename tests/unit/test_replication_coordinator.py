"""The supervisor's replication coordinator (broker/replication.py) without ZooKeeper: a fake
state store and registry, the real shared progress block. Cases found in review, each failing
on the code before its fix:

* a follower joins the in-sync set in ZooKeeper only after every worker counts it for
  acknowledgements (else it could take over lacking puts acknowledged in between);
* after a session loss a master with followers holds puts until the role has been decided
  again in the new session (another replica may have claimed it meanwhile).
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from metaq_fast.broker.replication import ReplicationCoordinator
from metaq_fast.broker.replica_control import now_ms
from metaq_fast.config import parse_config
from metaq_fast.zk.replica_state import ReplicaState

INI = """[system]
brokerId=0
minInSyncReplicas=2
[zookeeper]
zk.zkConnect=127.0.0.1:1
[topic=t]
"""


class Store:
    def __init__(self, coordinator):
        self.coordinator = coordinator
        self.writes = []

    def write(self, client, new, version):
        role = self.coordinator.role
        self.writes.append((new, role.isr, self.coordinator.progress.all_applied(role.version)))
        return version + 1


def coordinator(workers: int = 2) -> ReplicationCoordinator:
    c = ReplicationCoordinator(parse_config(INI), workers, wake=lambda: None, url="meta://m:1")
    c._registry = SimpleNamespace(client=None, request_pass=lambda: None)
    c.store = Store(c)
    c._lead(ReplicaState(3, "m", ("m",)), 7, keep_since=False)
    return c


def test_a_follower_joins_in_zookeeper_only_after_the_workers_count_it():
    c = coordinator()
    for slot in range(2):  # s0 fetched from both workers and is caught up
        c.progress.record_follower(slot, "s0", now_ms(), 0)
    stop = threading.Event()

    def workers():  # apply whatever role the supervisor has set, a little later
        while not stop.is_set():
            time.sleep(0.05)
            c.progress.applied[:] = c.role.version

    thread = threading.Thread(target=workers, daemon=True)
    thread.start()
    try:
        c._keep_isr()
    finally:
        stop.set()
        thread.join()
    ((new, counted, applied),) = c.store.writes
    assert new.isr == ("m", "s0")
    assert "s0" in counted and applied  # the workers counted s0 before ZooKeeper says so
    assert c.role.isr == ("m", "s0")


def test_a_master_holds_puts_after_a_session_loss_until_it_is_decided_again():
    c = coordinator()
    c.progress.record_follower(0, "s0", now_ms(), 0)
    c._lead(ReplicaState(3, "m", ("m", "s0")), 8, keep_since=True)
    assert not c.role.hold
    c.on_session("suspended")
    assert c.role.hold
    c.on_session("lost")
    c.on_session("connected")  # a new session: who leads is not known yet
    assert c.role.hold
    c._lead(ReplicaState(4, "m", ("m", "s0")), 9, keep_since=False)  # decide: still ours
    assert not c.role.hold
