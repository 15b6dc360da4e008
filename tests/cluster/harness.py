"""A whole cluster on test hosts: a 3-node ZooKeeper ensemble, brokers, producers, consumer
groups, each on a host of its own (tests/cluster/netns.py), and the audit of what they did.

    with Cluster(tmp_path, brokers=2) as cluster:
        cluster.start_load(producers=2, rate=400, seconds=20)
        ...faults...
        audit = cluster.finish()      # waits for the groups to catch up, stops everything
        assert all(g.lost == 0 for g in audit.groups.values())

Hosts: ``zk1..zk3`` (198.18.0.1-3), ``b1..bN`` the brokers (brokerId 1..N, port 8123 each, in
its own namespace), ``p1`` the producers, ``c1`` / ``c2`` the consumers (consumer ``i`` of each
of the two groups on ``c<i % 2 + 1>``, so a group survives the loss of one), and ``ctl``, where the test's own ZooKeeper client lives (it is never faulted). Brokers and
clients use ``zk.zkConnect=198.18.0.1:2181,198.18.0.2:2181,198.18.0.3:2181/metaq`` and 4 s
sessions. ``close`` stops every process by PID and deletes every namespace, also after a
failure.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.brokers import BrokerProcess
from tests.clientproc import ConsumerProc
from tests.helpers import wait_until

from tests.cluster.netns import Network
from tests.cluster.workload import ProducerLoad, audit
from tests.cluster.zk_ensemble import Ensemble

TOPIC = "audit"
BROKER_PORT = 8123
CHROOT = "/metaq"
SESSION_TIMEOUT_S = 4.0
GROUPS = ("g1", "g2")


class Cluster:
    def __init__(self, tmp_path: Path, *, brokers: int = 2, partitions: int = 2,
                 consumers_per_group: int = 2, workers: int = 1, system: dict | None = None):
        self.directory = Path(tmp_path)
        self.partitions = partitions
        self.workers = workers
        self.system = dict(system or {})  # more [system] keys for every broker
        self.replicas: dict[tuple[int, int], BrokerProcess] = {}  # (broker id, slave id)
        self.consumers_per_group = consumers_per_group
        self.net = Network("c")
        self.brokers: dict[int, BrokerProcess] = {}
        self.producers: list[ProducerLoad] = []
        self.groups: dict[str, list[ConsumerProc]] = {g: [] for g in GROUPS}
        self.zk = None
        try:
            zk_hosts = [self.net.add_host(f"zk{i}") for i in (1, 2, 3)]
            self.ctl = self.net.add_host("ctl")
            self.producer_host = self.net.add_host("p1")
            self.consumer_hosts = [self.net.add_host("c1"), self.net.add_host("c2")]
            self.ensemble = Ensemble(zk_hosts, self.directory / "zk").start()
            self.zk_connect = self.ensemble.connect_string(CHROOT)
            self.zk = self.ctl.call(self._control_client)
            for broker_id in range(1, brokers + 1):
                self.add_broker(broker_id)
        except BaseException:
            self.close()
            raise

    def _control_client(self):
        from kazoo.client import KazooClient

        root = KazooClient(hosts=self.ensemble.connect_string(), timeout=10)
        root.start(timeout=20)
        root.ensure_path(CHROOT)
        root.stop()
        root.close()
        client = KazooClient(hosts=self.zk_connect, timeout=10)
        client.start(timeout=20)
        return client

    # ---- brokers ----------------------------------------------------------------------------

    def add_broker(self, broker_id: int, start: bool = True) -> BrokerProcess:
        host = self.net.add_host(f"b{broker_id}")
        broker = BrokerProcess(
            self.directory / f"b{broker_id}", host=host, broker_id=broker_id, port=BROKER_PORT,
            workers=self.workers, zk_connect=self.zk_connect,
            topics={TOPIC: {"numPartitions": self.partitions}},
            system={"hostName": host.address, **self.system})
        self.brokers[broker_id] = broker
        if start:
            broker.start()
            self.wait_registered(broker_id)
        return broker

    def add_replica(self, broker_id: int, slave_id: int, start: bool = True) -> BrokerProcess:
        """Slave ``slave_id`` of broker ``broker_id`` on a host of its own, ``r<id>s<slave>``."""
        host = self.net.add_host(f"r{broker_id}s{slave_id}")
        replica = BrokerProcess(
            self.directory / f"r{broker_id}s{slave_id}", host=host, broker_id=broker_id,
            port=BROKER_PORT, workers=self.workers, zk_connect=self.zk_connect,
            topics={TOPIC: {"numPartitions": self.partitions}},
            system={"hostName": host.address, **self.system}, args=("--slave-id", str(slave_id)))
        self.replicas[(broker_id, slave_id)] = replica
        if start:
            replica.start()
        return replica

    def replication_state(self, broker_id: int) -> dict | None:
        """The broker id's ``/meta/replication/<id>`` (epoch, leader, isr), or None."""
        import json
        from kazoo.exceptions import NoNodeError

        def read():
            try:
                return json.loads(self.zk.get(f"/meta/replication/{broker_id}")[0])
            except NoNodeError:
                return None

        return self.read_zk(read)

    def registered_broker(self, broker_id: int) -> bool:
        """Its master node and its topic's ``topics-pub`` entry are in ZooKeeper."""
        from kazoo.exceptions import NoNodeError

        def read():
            try:
                if self.zk.exists(f"/meta/brokers/ids/{broker_id}/master") is None:
                    return False
                children = self.zk.get_children(f"/meta/brokers/topics-pub/{TOPIC}")
                return f"{broker_id}-m" in children
            except NoNodeError:
                return False

        return self.read_zk(read)

    def wait_registered(self, broker_id: int, timeout_s: float = 30.0) -> None:
        wait_until(lambda: self.registered_broker(broker_id), timeout_s=timeout_s,
                   message=f"broker {broker_id} registered in ZooKeeper")

    def host_of(self, broker_id: int):
        return self.brokers[broker_id].host

    def zk_hosts(self):
        return [m.node for m in self.ensemble.members]

    def owners(self, group: str) -> dict[str, str]:
        from tests.clientproc import owners

        return self.read_zk(lambda: owners(self.zk, group, TOPIC))

    def read_zk(self, read):
        """``read()`` against the control client, retried through connection loss and session
        expiry: scenarios that take the quorum away outlast the control client's own session,
        and kazoo opens a new one once the ensemble serves again."""
        from kazoo.retry import KazooRetry

        return KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0, deadline=30.0,
                          ignore_expire=True)(read)

    def partition_strings(self) -> list[str]:
        return sorted(f"{b}-{p}" for b in self.brokers for p in range(self.partitions))

    # ---- load -------------------------------------------------------------------------------

    def start_groups(self) -> None:
        for group in GROUPS:
            for i in range(self.consumers_per_group):
                proc = ConsumerProc(self.directory / group, zk=self.zk_connect, group=group,
                                    topic=TOPIC, consumer_id=f"{group}c{i}",
                                    commit_interval_ms=500, session_timeout_s=SESSION_TIMEOUT_S,
                                    host=self.consumer_hosts[i % len(self.consumer_hosts)])
                self.groups[group].append(proc.start())

    def start_load(self, producers: int = 2, rate: int = 400, seconds: float = 20.0,
                   pinned: tuple[str, ...] = ()) -> None:
        """``producers`` round-robin producers, plus one per partition in ``pinned`` that sends
        only there with one batch in flight (a key-ordered user: its order must hold), in
        batches of 5 so that a chunk queues several behind the one in flight."""
        if not any(self.groups.values()):
            self.start_groups()
        loads = [dict(producer_id=f"p{i}") for i in range(producers)]
        loads += [dict(producer_id=f"k{i}", partition=p, max_in_flight=1, batch_size=5)
                  for i, p in enumerate(pinned)]
        for load in loads:
            producer = ProducerLoad(self.directory / "producers", host=self.producer_host,
                                    zk=self.zk_connect, topic=TOPIC, rate=rate, seconds=seconds,
                                    session_timeout_s=SESSION_TIMEOUT_S, **load)
            self.producers.append(producer.start())

    def acked_count(self) -> int:
        return sum(p.acked() for p in self.producers)

    def wait_acked(self, count: int, timeout_s: float = 30.0) -> None:
        """Wait until the producers have ``count`` more acknowledgements than now: the load
        flows before a fault is made."""
        target = self.acked_count() + count
        wait_until(lambda: self.acked_count() >= target, timeout_s=timeout_s,
                   message=lambda: f"{count} acknowledgements ({self.acked_count()}/{target})")

    def acked_partitions(self, since: float) -> set[str]:
        """Partitions that acknowledged a message at or after ``since`` (time.time())."""
        return {r[2] for p in self.producers for r in p.results()
                if r[0] == "ok" and r[4] >= since}

    def wait_load_done(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        for producer in self.producers:
            producer.wait(max(1.0, deadline - time.monotonic()))

    def finish(self, catch_up_s: float = 60.0):
        """Wait for the producers to end and each group to have consumed every acknowledged
        message (bounded), stop the consumers cleanly, and return the audit."""
        self.wait_load_done()
        deadline = time.monotonic() + catch_up_s
        while time.monotonic() < deadline:
            result = audit(self.producers, self.groups)
            if all(g.lost == 0 for g in result.groups.values()):
                break
            time.sleep(0.5)
        for procs in self.groups.values():
            for proc in procs:
                proc.terminate()
        return audit(self.producers, self.groups)

    # ---- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        for procs in self.groups.values():
            for proc in procs:
                proc.kill()
        for producer in self.producers:
            producer.kill()
        for broker in [*self.brokers.values(), *self.replicas.values()]:
            try:
                broker.kill()
            except Exception:  # noqa: BLE001 - keep tearing down
                pass
        if self.zk is not None:
            try:
                self.zk.stop()
                self.zk.close()
            except Exception:  # noqa: BLE001
                pass
        try:
            if getattr(self, "ensemble", None) is not None:
                self.ensemble.stop()
        finally:
            self.net.close()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
