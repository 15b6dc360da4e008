"""Integration tests of metaq_fast.zk.cluster.ClusterView against a real ZooKeeper.

Brokers are faked with plain kazoo calls on their own sessions, writing the nodes exactly as a
MetaQ broker does (paths and data from metaq_fast.zk.paths): ``ids/<id>/master`` ephemeral with
``meta://127.0.0.1:PORT``, ``topics-pub/<t>/<id>-m`` and ``topics-sub/<t>/<id>-m`` ephemeral with
the topic-broker JSON, ``topics/<t>/<id>-m`` with the legacy count. Each test runs in its own
chroot (``zk_connect``); every client started here is stopped at teardown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from metaq_fast.client.selector import Partition as P
from metaq_fast.errors import InvalidNameError, ZooKeeperError
from metaq_fast.zk import paths
from metaq_fast.zk.cluster import ClusterView
from tests.helpers import drop_connection, expire_session, wait_until

pytestmark = pytest.mark.zk

ROOT = paths.DEFAULT_ROOT
HOST = "127.0.0.1"


def url(broker_id: int) -> str:
    return paths.broker_url(HOST, port(broker_id))


def port(broker_id: int) -> int:
    return 8100 + broker_id


class FakeBroker:
    """One broker's registration, on its own ZooKeeper session (so its ephemerals are its own)."""

    def __init__(self, connect: str, broker_id: int, root: str = ROOT) -> None:
        self.broker_id = broker_id
        self.root = root
        self.client = KazooClient(hosts=connect, timeout=5)
        self.client.start(timeout=10)

    def master(self, port_: int | None = None) -> "FakeBroker":
        self.client.create(
            paths.broker_master_path(self.root, self.broker_id),
            paths.encode_broker_url(HOST, port_ if port_ is not None else port(self.broker_id)),
            ephemeral=True,
            makepath=True,
        )
        return self

    def drop_master(self) -> None:
        self.client.delete(paths.broker_master_path(self.root, self.broker_id))

    def publish(
        self,
        topic: str,
        num_parts: int,
        *,
        pub: bool = True,
        sub: bool = True,
        legacy: bool = True,
        slave_id: int | None = None,
    ) -> "FakeBroker":
        """Register ``topic`` as MetaQ's registerTopicInZk: delete this broker's nodes, create."""
        self.unpublish(topic, slave_id=slave_id)
        b, s = self.broker_id, slave_id
        json = paths.encode_topic_broker_json(num_parts, b, s)
        nodes = []
        if legacy:
            count = paths.encode_num_parts(num_parts)
            nodes.append((paths.topic_broker_path(self.root, topic, b, s), count))
        if pub:
            nodes.append((paths.topics_pub_broker_path(self.root, topic, b, s), json))
        if sub:
            nodes.append((paths.topics_sub_broker_path(self.root, topic, b, s), json))
        for path, data in nodes:
            self.client.create(path, data, ephemeral=True, makepath=True)
        return self

    def unpublish(self, topic: str, slave_id: int | None = None) -> None:
        b = self.broker_id
        for path in (
            paths.topic_broker_path(self.root, topic, b, slave_id),
            paths.topics_pub_broker_path(self.root, topic, b, slave_id),
            paths.topics_sub_broker_path(self.root, topic, b, slave_id),
        ):
            if self.client.exists(path):
                self.client.delete(path)

    def stop(self) -> None:
        """Close the session: the server deletes every ephemeral node of this broker at once."""
        self.client.stop()
        self.client.close()


class Recorder:
    """A thread-safe callback that records its calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple] = []

    def __call__(self, *args) -> None:
        with self._lock:
            self.calls.append(args)

    def count(self, *args) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c == args)


@pytest.fixture
def broker(zk_connect: str) -> Iterator[Callable[..., FakeBroker]]:
    started: list[FakeBroker] = []

    def make(broker_id: int, root: str = ROOT) -> FakeBroker:
        fake = FakeBroker(zk_connect, broker_id, root)
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.client.stop()
        fake.client.close()


@pytest.fixture
def view(zk_client: KazooClient) -> Iterator[ClusterView]:
    v = ClusterView(zk_client)
    try:
        yield v
    finally:
        v.close()


def parts(broker_id: int, n: int) -> list[P]:
    return [P(broker_id, p) for p in range(n)]


# ---- ordering ------------------------------------------------------------------------------


def test_publish_numeric_subscribe_string_order(broker, zk_client):
    broker(10).master().publish("t", 1)
    broker(2).master().publish("t", 2)
    broker(1).master().publish("t", 11)
    with ClusterView(zk_client) as view:
        assert view.brokers() == {1: url(1), 2: url(2), 10: url(10)}
        assert view.broker_url(2) == "meta://127.0.0.1:8102"
        assert view.broker_url(3) is None
        assert view.publish_partitions("t") == parts(1, 11) + parts(2, 2) + parts(10, 1)
        assert view.subscribe_partitions("t") == (
            ["1-0", "1-1", "1-10"]
            + [f"1-{i}" for i in range(2, 10)]
            + ["10-0", "2-0", "2-1"]
        )
        assert view.topics() == ["t"]
        # the same view also sorts as MetaQ's consumer would
        assert view.subscribe_partitions("t") == sorted(map(str, view.publish_partitions("t")))


def test_watching_creates_topic_nodes(view, zk_client):
    assert zk_client.exists(paths.broker_ids_path(ROOT))
    assert view.publish_partitions("fresh") == []
    assert view.subscribe_partitions("fresh") == []
    assert zk_client.exists(paths.topics_pub_path(ROOT, "fresh"))
    assert zk_client.exists(paths.topics_sub_path(ROOT, "fresh"))
    with pytest.raises(InvalidNameError):
        view.publish_partitions("bad/topic")


# ---- changes -------------------------------------------------------------------------------


def test_adding_broker_fires_watch_and_updates_view(view, broker):
    broker(1).master().publish("t", 2)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 2))
    on_topic, on_brokers, on_other = Recorder(), Recorder(), Recorder()
    view.watch_topic("t", on_topic)
    view.watch_topic("other", on_other)
    view.on_brokers_change(on_brokers)
    assert on_topic.calls == []  # not called for the current state

    broker(3).master().publish("t", 3)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 2) + parts(3, 3))
    wait_until(lambda: view.subscribe_partitions("t") == ["1-0", "1-1", "3-0", "3-1", "3-2"])
    wait_until(lambda: on_topic.count("t") >= 1, message="watch_topic callback not called")
    wait_until(lambda: on_brokers.count() >= 1, message="on_brokers_change not called")
    wait_until(lambda: view.brokers() == {1: url(1), 3: url(3)})
    # a watcher of another topic hears of the broker-set change too (watch_topic's docstring),
    # always with its own topic's name
    wait_until(lambda: on_other.count("other") >= 1, message="other topic's watcher not called")
    assert on_other.calls and all(c == ("other",) for c in on_other.calls), on_other.calls


def test_broker_leaving_removes_its_partitions(view, broker):
    one = broker(1).master().publish("t", 2)
    two = broker(2).master().publish("t", 2)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 2) + parts(2, 2))
    on_topic = Recorder()
    view.watch_topic("t", on_topic)

    one.unpublish("t")  # deleting the topic's nodes
    wait_until(lambda: view.publish_partitions("t") == parts(2, 2))
    wait_until(lambda: view.subscribe_partitions("t") == ["2-0", "2-1"])
    wait_until(lambda: view.brokers() == {1: url(1), 2: url(2)})
    wait_until(lambda: on_topic.count("t") >= 1)

    two.stop()  # closing the broker's session removes all its ephemerals
    wait_until(lambda: view.publish_partitions("t") == [])
    wait_until(lambda: view.subscribe_partitions("t") == [])
    wait_until(lambda: view.brokers() == {1: url(1)})

    one.drop_master()
    wait_until(lambda: view.brokers() == {})


def test_broker_without_master_url_is_not_published(view, broker, zk_client):
    # A broker id node without its master child (a crashed or slave-only broker).
    zk_client.create(paths.broker_id_path(ROOT, 5), b"", makepath=True)
    five = broker(5).publish("t", 2)  # pub/sub JSON but no master url
    broker(1).master().publish("t", 1)
    wait_until(lambda: view.brokers() == {1: url(1)})
    wait_until(lambda: view.publish_partitions("t") == parts(1, 1))
    # consumers see it all
    wait_until(lambda: view.subscribe_partitions("t") == ["1-0", "5-0", "5-1"])
    on_topic = Recorder()
    view.watch_topic("t", on_topic)

    five.master()
    wait_until(lambda: view.publish_partitions("t") == parts(1, 1) + parts(5, 2))
    wait_until(lambda: view.brokers() == {1: url(1), 5: url(5)})
    wait_until(lambda: on_topic.count("t") >= 1)

    five.drop_master()  # master gone, topic nodes still there
    wait_until(lambda: view.publish_partitions("t") == parts(1, 1))
    wait_until(lambda: view.subscribe_partitions("t") == ["1-0", "5-0", "5-1"])


def test_master_url_changes_and_blank_or_bad_urls(view, broker, zk_client):
    b = broker(4).master()
    wait_until(lambda: view.brokers() == {4: url(4)})
    b.drop_master()
    b.master(port_=9999)
    wait_until(lambda: view.brokers() == {4: "meta://127.0.0.1:9999"})
    b.client.set(paths.broker_master_path(ROOT, 4), b"not a url")
    wait_until(lambda: view.brokers() == {})
    b.client.set(paths.broker_master_path(ROOT, 4), paths.encode_broker_url("::1", 8123))
    wait_until(lambda: view.brokers() == {4: "meta://[::1]:8123"})
    # ids children that are not broker ids are ignored
    zk_client.create(paths.broker_ids_path(ROOT) + "/junk")
    broker(6).master()
    wait_until(lambda: set(view.brokers()) == {4, 6})


def test_republish_with_new_partition_count(view, broker):
    b = broker(0).master().publish("t", 2)
    wait_until(lambda: view.publish_partitions("t") == parts(0, 2))
    b.publish("t", 4)  # delete + create: same child names, new numParts
    wait_until(lambda: view.publish_partitions("t") == parts(0, 4))
    wait_until(lambda: view.subscribe_partitions("t") == ["0-0", "0-1", "0-2", "0-3"])


def test_slaves_count_for_consumers_only(view, broker):
    broker(0).master().publish("t", 2)
    slave = broker(0)  # the slave of broker 0, on its own session
    slave.publish("t", 3, pub=False, legacy=False, slave_id=1)
    wait_until(lambda: view.publish_partitions("t") == parts(0, 2))
    # de-duplicated union of master and slave
    wait_until(lambda: view.subscribe_partitions("t") == ["0-0", "0-1", "0-2"])
    slave.stop()
    wait_until(lambda: view.subscribe_partitions("t") == ["0-0", "0-1"])


def test_bad_topic_children_are_skipped(view, broker, zk_client):
    broker(1).master().publish("t", 2)
    broker(7).master()
    zk_client.create(paths.topics_pub_broker_path(ROOT, "t", 7), b"{garbage", ephemeral=True)
    zk_client.create(paths.topics_pub_path(ROOT, "t") + "/junk", b"{}", ephemeral=True)
    zk_client.create(paths.topics_sub_path(ROOT, "t") + "/x-y", b"{}", ephemeral=True)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 2))
    wait_until(lambda: view.subscribe_partitions("t") == ["1-0", "1-1"])
    # a good child added later is still seen: the watch survived the bad data
    zk_client.set(
        paths.topics_pub_broker_path(ROOT, "t", 7), paths.encode_topic_broker_json(1, 7)
    )
    broker(8).master().publish("t", 1)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 2) + parts(7, 1) + parts(8, 1))


def test_topic_tree_deleted_and_recreated(view, broker, zk_client):
    b = broker(1).master().publish("t", 2)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 2))
    b.unpublish("t")
    zk_client.delete(paths.topics_pub_path(ROOT, "t"), recursive=True)
    zk_client.delete(paths.topics_sub_path(ROOT, "t"), recursive=True)
    wait_until(lambda: view.publish_partitions("t") == [] and view.subscribe_partitions("t") == [])
    b.publish("t", 3)  # makepath re-creates the topic nodes
    wait_until(lambda: view.publish_partitions("t") == parts(1, 3))
    wait_until(lambda: view.subscribe_partitions("t") == ["1-0", "1-1", "1-2"])
    broker(2).master().publish("t", 1)  # and the new children watch keeps working
    wait_until(lambda: view.publish_partitions("t") == parts(1, 3) + parts(2, 1))


# ---- session faults of the view's client ---------------------------------------------------


def test_view_survives_session_expiry(view, broker, zk_client, zk_hosts):
    one = broker(1).master().publish("t", 2)
    two = broker(2).master().publish("t", 2).publish("d", 2)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 2) + parts(2, 2))
    wait_until(lambda: view.subscribe_partitions("d") == ["2-0", "2-1"])
    on_topic, on_brokers = Recorder(), Recorder()
    view.watch_topic("t", on_topic)
    view.on_brokers_change(on_brokers)

    # Hold the view's client in LOST (its connection thread waits in this listener) so the
    # changes below certainly happen while it has no session and no watches.
    lost, release = threading.Event(), threading.Event()

    def hold(state):
        if state == KazooState.LOST:
            lost.set()
            release.wait(15)
            return True
        return False

    zk_client.add_listener(hold)
    old_session = zk_client.client_id[0]
    expirer = threading.Thread(target=expire_session, args=(zk_client, zk_hosts))
    expirer.start()
    try:
        assert lost.wait(15), "view's session did not expire"
        two.publish("t", 5)
        # Topic "d" changes only in its data (same child names, new numParts): kazoo's re-armed
        # ChildrenWatch does not call back for that, only the view's re-read on reconnect sees it.
        two.publish("d", 3)
        one.drop_master()
        one.master(port_=9001)  # the master url moved
        broker(3).master().publish("t", 1)  # a new broker
    finally:
        release.set()
        expirer.join(20)
    assert not expirer.is_alive()
    wait_until(lambda: zk_client.connected, timeout_s=15)
    assert zk_client.client_id[0] != old_session

    wait_until(
        lambda: view.publish_partitions("t") == parts(1, 2) + parts(2, 5) + parts(3, 1),
        timeout_s=10,
        message=lambda: f"view after expiry: {view.publish_partitions('t')}",
    )
    wait_until(
        lambda: view.subscribe_partitions("t")
        == ["1-0", "1-1", "2-0", "2-1", "2-2", "2-3", "2-4", "3-0"]
    )
    wait_until(lambda: view.brokers() == {1: "meta://127.0.0.1:9001", 2: url(2), 3: url(3)})
    wait_until(lambda: view.publish_partitions("d") == parts(2, 3))
    wait_until(lambda: view.subscribe_partitions("d") == ["2-0", "2-1", "2-2"])

    # watches are armed again on the new session: later changes still arrive
    before_topic, before_brokers = on_topic.count("t"), on_brokers.count()
    two.stop()
    wait_until(lambda: view.publish_partitions("t") == parts(1, 2) + parts(3, 1))
    wait_until(lambda: view.brokers() == {1: "meta://127.0.0.1:9001", 3: url(3)})
    wait_until(lambda: on_topic.count("t") > before_topic)
    wait_until(lambda: on_brokers.count() > before_brokers)
    broker(4).master().publish("t", 1)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 2) + parts(3, 1) + parts(4, 1))
    # and a topic first used after the expiry works too
    broker(4).publish("later", 2)
    wait_until(lambda: view.publish_partitions("later") == parts(4, 2))


def test_view_survives_connection_drop(view, broker, zk_client):
    broker(1).master().publish("t", 1)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 1))
    drop_connection(zk_client)
    broker(2).master().publish("t", 2)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 1) + parts(2, 2))
    wait_until(lambda: view.brokers() == {1: url(1), 2: url(2)})


# ---- life cycle, legacy tree, roots --------------------------------------------------------


def test_close_stops_callbacks(zk_client, broker):
    listeners_before = len(zk_client.state_listeners)
    view = ClusterView(zk_client)
    on_topic, on_brokers = Recorder(), Recorder()
    view.watch_topic("t", on_topic)
    remove = view.on_brokers_change(on_brokers)
    remove()
    remove()  # idempotent
    broker(1).master().publish("t", 1)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 1))
    wait_until(lambda: on_topic.count("t") >= 1)
    assert on_brokers.calls == []

    view.close()
    view.close()
    assert view.closed
    # every kazoo recipe of the view is stopped now, not at its next event
    assert len(zk_client.state_listeners) == listeners_before
    calls = len(on_topic.calls)
    sentinel = Recorder()
    other = ClusterView(zk_client)  # a second view on the same client sees the next change
    try:
        other.watch_topic("t", sentinel)
        broker(2).master().publish("t", 1)
        wait_until(lambda: sentinel.count("t") >= 1)
        assert len(on_topic.calls) == calls  # the closed view called nothing
        assert view.publish_partitions("t") == parts(1, 1)  # last state it saw
        with pytest.raises(ZooKeeperError):
            view.publish_partitions("new-topic")
        with pytest.raises(ZooKeeperError):
            view.watch_topic("t", Recorder())
        with pytest.raises(ZooKeeperError):
            view.on_brokers_change(Recorder())
    finally:
        other.close()


def test_unwatch_topic(view, broker):
    on_topic = Recorder()
    unwatch = view.watch_topic("t", on_topic)
    broker(1).master().publish("t", 1)
    wait_until(lambda: on_topic.count("t") >= 1)
    unwatch()
    n = len(on_topic.calls)
    broker(2).master().publish("t", 1)
    wait_until(lambda: view.publish_partitions("t") == parts(1, 1) + parts(2, 1))
    assert len(on_topic.calls) == n


def test_legacy_partitions(view, broker):
    broker(10).master().publish("t", 1, pub=False, sub=False)
    broker(2).master().publish("t", 2, pub=False, sub=False)
    broker(1).publish("t", 3, pub=False, sub=False)  # legacy readers do not check the master
    broker(2).publish("t", 4, pub=False, sub=False, slave_id=1)  # slaves are not read
    assert view.legacy_partitions("t") == parts(1, 3) + parts(2, 2) + parts(10, 1)
    assert view.legacy_partitions("missing") == []
    assert view.publish_partitions("t") == []  # the legacy tree is not the pub tree


def test_custom_root(zk_client, broker):
    broker(1, root="/other").master().publish("t", 2)
    broker(2).master().publish("t", 1)  # under /meta: not this cluster
    with ClusterView(zk_client, root="other/") as view:
        assert view.root == "/other"
        assert view.brokers() == {1: url(1)}
        assert view.publish_partitions("t") == parts(1, 2)
