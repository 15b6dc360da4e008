"""Integration tests of metaq_fast.zk.registry.BrokerRegistry against a real ZooKeeper.

Nodes and data are checked against metaq-protocol.md 6.1/6.2 and the ZK vectors of 16.2. Sessions
are expired for real (tests.helpers.expire_session) and connections dropped with kazoo's own hook
(drop_connection). Tests that stop ZooKeeper itself use a private LocalZooKeeper in tmp_path,
stopped by PID at teardown. Every registry goes through the ``make_registry`` factory, which stops
it at teardown and checks that no registry or kazoo-closing thread is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from metaq_fast.errors import (
    DuplicateBrokerError,
    InvalidArgumentError,
    InvalidNameError,
    ZooKeeperError,
)
from metaq_fast.zk.registry import BrokerRegistry, TopicRegistration
from metaq_fast.zk.server import LocalZooKeeper, find_zookeeper
from tests.helpers import drop_connection, expire_session, free_port, skip_or_fail, wait_until

pytestmark = pytest.mark.zk

ROOT = "/meta"
URL0 = "meta://10.1.2.3:8123"
URL0_OTHER = "meta://10.1.2.9:8123"
URL1 = "meta://10.1.2.4:8124"
CHECKSUM = 3735928559  # 0xDEADBEEF: the full unsigned CRC32 range
MASTER0 = f"{ROOT}/brokers/ids/0/master"
ID0 = f"{ROOT}/brokers/ids/0"
CHECKSUM0 = f"{ROOT}/brokers/ids/0/master_config_checksum"
SESSION_TIMEOUT_MS = 10_000
THREAD_PREFIXES = ("metaq-zk-registry-", "metaq-zk-close-")


def topic_nodes(topic: str, broker_id: int = 0) -> tuple[str, str, str]:
    child = f"{broker_id}-m"
    return (
        f"{ROOT}/brokers/topics/{topic}/{child}",
        f"{ROOT}/brokers/topics-pub/{topic}/{child}",
        f"{ROOT}/brokers/topics-sub/{topic}/{child}",
    )


def node(zk: KazooClient, path: str):
    """(data, stat) of ``path``, or None if it does not exist."""
    try:
        return zk.get(path)
    except NoNodeError:
        return None


def assert_topic_registered(
    zk: KazooClient,
    topic: str,
    num_parts: int,
    session_id: int,
    *,
    pub: bool = True,
    sub: bool = True,
    broker_id: int = 0,
) -> None:
    legacy, pub_path, sub_path = topic_nodes(topic, broker_id)
    data, stat = node(zk, legacy)
    assert data == str(num_parts).encode()
    assert stat.ephemeralOwner == session_id
    for path, wanted in ((pub_path, pub), (sub_path, sub)):
        got = node(zk, path)
        if not wanted:
            assert got is None, path
            continue
        assert got is not None, path
        assert json.loads(got[0]) == {"numParts": num_parts, "broker": f"{broker_id}-m"}
        assert got[1].ephemeralOwner == session_id


def assert_broker_registered(
    zk: KazooClient, session_id: int, url: str = URL0, checksum: int | None = CHECKSUM
) -> None:
    data, stat = node(zk, MASTER0)
    assert data == url.encode()
    assert stat.ephemeralOwner == session_id
    data, stat = node(zk, ID0)
    assert data == url.encode()
    assert stat.ephemeralOwner == 0  # persistent, for old clients
    got = node(zk, CHECKSUM0)
    if checksum is None:
        assert got is None
    else:
        assert got[0] == str(checksum).encode()
        assert got[1].ephemeralOwner == session_id


def registry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIXES)]


@pytest.fixture
def make_registry() -> Iterator[Callable[..., BrokerRegistry]]:
    """Factory of BrokerRegistry objects (not started); all stopped and checked at teardown."""
    made: list[BrokerRegistry] = []

    def make(connect: str, broker_id: int = 0, url: str = URL0, **kwargs) -> BrokerRegistry:
        kwargs.setdefault("session_timeout_ms", SESSION_TIMEOUT_MS)
        kwargs.setdefault("connection_timeout_ms", 5_000)
        kwargs.setdefault("sync_time_ms", 0)
        registry = BrokerRegistry(connect, broker_id=broker_id, url=url, **kwargs)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.stop(timeout_s=5.0)
    for registry in made:
        assert registry.state == "stopped"
        client = registry.client
        # A client stop() gave up waiting for closes in the background: wait for it here.
        wait_until(lambda: client is None or not client.connected, timeout_s=10.0)
    wait_until(
        lambda: not registry_threads(),
        timeout_s=10.0,
        message=lambda: f"registry threads left: {registry_threads()}",
    )


@pytest.fixture
def private_zk(tmp_path: Path) -> Iterator[Callable[[], LocalZooKeeper]]:
    """Factory of private LocalZooKeeper servers on fixed free ports (stopped by PID at end)."""
    try:
        find_zookeeper()
    except ZooKeeperError as e:
        skip_or_fail(str(e))
    servers: list[LocalZooKeeper] = []

    def make() -> LocalZooKeeper:
        # An explicit port, so a restart can never move to another one.
        server = LocalZooKeeper(tmp_path / f"zk{len(servers)}", port=free_port(), test_mode=True)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()
        assert not server.is_running()


@pytest.fixture
def private_client() -> Iterator[Callable[[str], KazooClient]]:
    clients: list[KazooClient] = []

    def make(hosts: str) -> KazooClient:
        client = KazooClient(hosts=hosts, timeout=5.0)
        clients.append(client)
        client.start(timeout=10)
        return client

    yield make
    for client in clients:
        client.stop()
        client.close()


class StateLog:
    """on_change target: the states in order (called from the registry's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: list[str] = []

    def __call__(self, state: str) -> None:
        with self._lock:
            self._states.append(state)

    @property
    def states(self) -> list[str]:
        with self._lock:
            return list(self._states)


# ---- registration --------------------------------------------------------------------------


def test_registration_matches_reference_vectors(zk_connect, zk_client, make_registry):
    registry = make_registry(zk_connect, config_checksum=CHECKSUM)
    registry.start(timeout_s=10)
    assert registry.state == "connected"
    assert registry.registered and registry.wait_registered(0)
    session = registry.session_id
    assert session is not None and session == registry.client.client_id[0]

    assert registry.register_topic("test", 2) is True

    assert_broker_registered(zk_client, session)
    assert_topic_registered(zk_client, "test", 2, session)
    # Exactly MetaQ's bytes: the legacy node is the decimal count, the JSON has two keys.
    legacy, pub, sub = topic_nodes("test")
    assert zk_client.get(legacy)[0] == b"2"
    for path in (pub, sub):
        assert sorted(json.loads(zk_client.get(path)[0])) == ["broker", "numParts"]
    # Parents are persistent.
    for parent in (f"{ROOT}/brokers/topics/test", f"{ROOT}/brokers/topics-pub/test", ID0):
        assert zk_client.get(parent)[1].ephemeralOwner == 0
    assert registry.registered_topics() == {"test": TopicRegistration(2, True, True)}
    assert registry.registered


def test_no_checksum_node_without_checksum(zk_connect, zk_client, make_registry):
    registry = make_registry(zk_connect)
    registry.start(timeout_s=10)
    assert_broker_registered(zk_client, registry.session_id, checksum=None)


def test_register_topic_is_idempotent_and_follows_accept_flags(
    zk_connect, zk_client, make_registry
):
    registry = make_registry(zk_connect)
    registry.start(timeout_s=10)
    session = registry.session_id
    legacy, pub, sub = topic_nodes("test")

    assert registry.register_topic("test", 2)
    czxids = [zk_client.get(p)[1].czxid for p in (legacy, pub, sub)]
    assert registry.register_topic("test", 2)  # same registration: nothing touched
    assert [zk_client.get(p)[1].czxid for p in (legacy, pub, sub)] == czxids

    assert registry.register_topic("test", 2, accept_publish=False)
    assert_topic_registered(zk_client, "test", 2, session, pub=False)
    assert zk_client.get(legacy)[1].czxid != czxids[0]  # MetaQ: delete, then create

    assert registry.register_topic("test", 4, accept_publish=True, accept_subscribe=False)
    assert_topic_registered(zk_client, "test", 4, session, sub=False)
    assert registry.registered_topics() == {"test": TopicRegistration(4, True, False)}

    assert registry.unregister_topic("test")
    assert [node(zk_client, p) for p in (legacy, pub, sub)] == [None, None, None]
    assert registry.registered_topics() == {}
    assert registry.unregister_topic("never-registered")
    assert registry.registered


def test_register_topic_rejects_bad_input(zk_connect, make_registry):
    registry = make_registry(zk_connect)
    registry.start(timeout_s=10)
    with pytest.raises(InvalidNameError):
        registry.register_topic("bad/name", 1)
    with pytest.raises(InvalidNameError):
        registry.register_topic("..", 1)
    with pytest.raises(InvalidArgumentError):
        registry.register_topic("test", 0)
    with pytest.raises(InvalidArgumentError):
        registry.register_topic("test", -1)
    assert registry.registered_topics() == {}


def test_constructor_rejects_bad_arguments():
    with pytest.raises(InvalidArgumentError):
        BrokerRegistry("127.0.0.1:2181", broker_id=-1, url=URL0)
    with pytest.raises(InvalidArgumentError):
        BrokerRegistry("127.0.0.1:2181", broker_id=0, url="http://x:1")
    with pytest.raises(InvalidArgumentError):
        BrokerRegistry("127.0.0.1:2181", broker_id=0, url=URL0, config_checksum=1 << 32)
    with pytest.raises(InvalidArgumentError):
        BrokerRegistry("127.0.0.1:2181", broker_id=0, url=URL0, session_timeout_ms=0)
    with pytest.raises(InvalidNameError):
        BrokerRegistry("127.0.0.1:2181", root="/a//b", broker_id=0, url=URL0)


def test_topics_known_before_start_are_registered_at_start(zk_connect, zk_client, make_registry):
    registry = make_registry(zk_connect)
    assert registry.register_topic("early", 3, accept_subscribe=False) is False  # not started
    assert registry.state == "stopped" and not registry.registered
    registry.start(timeout_s=10)
    assert_topic_registered(zk_client, "early", 3, registry.session_id, sub=False)


def test_set_config_checksum_updates_and_removes_the_node(zk_connect, zk_client, make_registry):
    registry = make_registry(zk_connect, config_checksum=1)
    registry.start(timeout_s=10)
    assert zk_client.get(CHECKSUM0)[0] == b"1"
    assert registry.set_config_checksum(CHECKSUM)
    assert zk_client.get(CHECKSUM0)[0] == str(CHECKSUM).encode()
    assert registry.set_config_checksum(None)
    assert node(zk_client, CHECKSUM0) is None
    assert_broker_registered(zk_client, registry.session_id, checksum=None)


def test_concurrent_topic_registration(zk_connect, zk_client, make_registry):
    registry = make_registry(zk_connect)
    registry.start(timeout_s=10)
    results: list[bool] = []
    lock = threading.Lock()

    def register(i: int) -> None:
        for j in range(10):
            ok = registry.register_topic(f"t{i}-{j}", 1 + j, timeout_s=10)
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [True] * 40
    session = registry.session_id
    for i in range(4):
        for j in range(10):
            assert_topic_registered(zk_client, f"t{i}-{j}", 1 + j, session)
    assert len(registry.registered_topics()) == 40
    assert registry.registered


# ---- several brokers -------------------------------------------------------------------------


def test_two_brokers_with_different_ids_coexist(zk_connect, zk_client, make_registry):
    r0 = make_registry(zk_connect, broker_id=0, url=URL0)
    r1 = make_registry(zk_connect, broker_id=1, url=URL1)
    r0.start(timeout_s=10)
    r1.start(timeout_s=10)
    assert r0.register_topic("test", 2)
    assert r1.register_topic("test", 3)

    assert sorted(zk_client.get_children(f"{ROOT}/brokers/ids")) == ["0", "1"]
    assert zk_client.get(f"{ROOT}/brokers/ids/1/master")[0] == URL1.encode()
    for tree in ("topics", "topics-pub", "topics-sub"):
        assert sorted(zk_client.get_children(f"{ROOT}/brokers/{tree}/test")) == ["0-m", "1-m"]
    assert_topic_registered(zk_client, "test", 2, r0.session_id, broker_id=0)
    assert_topic_registered(zk_client, "test", 3, r1.session_id, broker_id=1)

    r0.stop(timeout_s=5)
    assert node(zk_client, MASTER0) is None
    assert node(zk_client, ID0) is None
    assert_topic_registered(zk_client, "test", 3, r1.session_id, broker_id=1)
    assert zk_client.get(f"{ROOT}/brokers/ids/1")[0] == URL1.encode()


def test_duplicate_broker_id_is_refused_while_the_first_is_alive(
    zk_connect, zk_client, make_registry
):
    first = make_registry(zk_connect, url=URL0, config_checksum=CHECKSUM)
    first.start(timeout_s=10)
    assert first.register_topic("test", 2)
    second = make_registry(zk_connect, url=URL0_OTHER)
    with pytest.raises(DuplicateBrokerError) as excinfo:
        second.start(timeout_s=10)
    assert str(excinfo.value).startswith(
        f"broker id 0 is already registered by {URL0} (another live broker); refusing to start"
    )
    assert second.state == "stopped" and not second.registered
    assert not second.client.connected
    # The first broker's registration is untouched.
    assert_broker_registered(zk_client, first.session_id)
    assert_topic_registered(zk_client, "test", 2, first.session_id)
    assert first.registered

    first.stop(timeout_s=5)
    third = make_registry(zk_connect, url=URL0_OTHER)
    third.start(timeout_s=10)
    assert_broker_registered(zk_client, third.session_id, url=URL0_OTHER, checksum=None)


def test_start_can_only_be_called_once(zk_connect, make_registry):
    registry = make_registry(zk_connect)
    registry.start(timeout_s=10)
    with pytest.raises(RuntimeError):
        registry.start(timeout_s=10)


# ---- session and connection loss ---------------------------------------------------------------


def test_session_expiry_reregisters_everything(zk_hosts, zk_connect, zk_client, make_registry):
    states = StateLog()
    registry = make_registry(zk_connect, config_checksum=CHECKSUM, on_change=states)
    registry.start(timeout_s=10)
    assert registry.register_topic("test", 2)
    assert registry.register_topic("other", 1, accept_publish=False)
    old_session = registry.session_id

    vanished = threading.Event()
    zk_client.exists(
        MASTER0, watch=lambda event: vanished.set() if event.type == "DELETED" else None
    )
    assert expire_session(registry.client, zk_hosts) == old_session
    assert vanished.wait(10), "the master node did not vanish with the expired session"

    wait_until(
        lambda: registry.wait_registered(0) and registry.session_id not in (None, old_session),
        timeout_s=15,
        message=lambda: f"not registered again: state {registry.state}",
    )
    new_session = registry.session_id
    assert_broker_registered(zk_client, new_session)
    assert_topic_registered(zk_client, "test", 2, new_session)
    assert_topic_registered(zk_client, "other", 1, new_session, pub=False)
    assert registry.registered_topics() == {
        "test": TopicRegistration(2, True, True),
        "other": TopicRegistration(1, False, True),
    }
    seen = wait_until(
        lambda: (s := states.states) and "lost" in s and s[-1] == "connected" and s,
        message=lambda: f"states {states.states}",
    )
    assert seen[0] == "connected"


def test_topic_registered_after_session_loss_is_kept(
    zk_hosts, zk_connect, zk_client, make_registry
):
    registry = make_registry(zk_connect)
    registry.start(timeout_s=10)
    assert registry.register_topic("test", 2)
    old_session = registry.session_id
    expire_session(registry.client, zk_hosts)
    # Registered while (or right after) the session was lost: done in the new session.
    assert registry.register_topic("late", 5, timeout_s=15)
    wait_until(lambda: registry.wait_registered(0) and registry.session_id != old_session,
               timeout_s=15)
    assert_topic_registered(zk_client, "test", 2, registry.session_id)
    assert_topic_registered(zk_client, "late", 5, registry.session_id)


def test_connection_drop_keeps_the_session_and_the_nodes(zk_connect, zk_client, make_registry):
    states = StateLog()
    registry = make_registry(zk_connect, config_checksum=CHECKSUM, on_change=states)
    registry.start(timeout_s=10)
    assert registry.register_topic("test", 2)
    session = registry.session_id
    watched = [MASTER0, CHECKSUM0, *topic_nodes("test")]
    czxids = [zk_client.get(p)[1].czxid for p in watched]

    drop_connection(registry.client)
    assert registry.wait_registered(10)
    assert registry.session_id == session
    assert [zk_client.get(p)[1].czxid for p in watched] == czxids  # never re-created
    assert_broker_registered(zk_client, session)
    wait_until(lambda: states.states[-2:] == ["suspended", "connected"],
               message=lambda: f"states {states.states}")
    assert "lost" not in states.states


def test_nodes_missing_after_reconnect_are_recreated(zk_connect, zk_client, make_registry):
    registry = make_registry(zk_connect, config_checksum=CHECKSUM)
    registry.start(timeout_s=10)
    assert registry.register_topic("test", 2)
    session = registry.session_id
    master_czxid = zk_client.get(MASTER0)[1].czxid
    _, pub, sub = topic_nodes("test")
    # Someone removed nodes behind the registry's back (it does not watch them) ...
    zk_client.delete(pub)
    zk_client.delete(CHECKSUM0)
    zk_client.set(sub, b'{"numParts":7,"broker":"0-m"}')
    # ... a reconnect with the same session verifies everything and repairs it.
    drop_connection(registry.client)
    assert registry.wait_registered(10)
    assert registry.session_id == session
    assert_broker_registered(zk_client, session)
    assert_topic_registered(zk_client, "test", 2, session)
    assert zk_client.get(MASTER0)[1].czxid == master_czxid


# ---- stop -------------------------------------------------------------------------------------


def test_stop_removes_every_node(zk_connect, zk_client, make_registry):
    registry = make_registry(zk_connect, config_checksum=CHECKSUM)
    registry.start(timeout_s=10)
    assert registry.register_topic("test", 2)
    assert registry.register_topic("other", 1, accept_subscribe=False)
    registry.stop(timeout_s=5)

    for path in (MASTER0, CHECKSUM0, ID0, *topic_nodes("test"), *topic_nodes("other")):
        assert node(zk_client, path) is None, path
    assert zk_client.get_children(f"{ROOT}/brokers/ids") == []
    assert registry.state == "stopped"
    assert registry.session_id is None and not registry.registered
    assert not registry.client.connected
    assert registry.register_topic("test", 2) is False
    registry.stop(timeout_s=1)  # again: nothing to do


def test_stop_blanks_the_broker_node_when_slaves_remain(zk_connect, zk_client, make_registry):
    registry = make_registry(zk_connect)
    registry.start(timeout_s=10)
    slave = f"{ID0}/slave1"
    zk_client.create(slave, b"meta://10.1.2.5:8123", ephemeral=True)
    registry.stop(timeout_s=5)
    assert node(zk_client, MASTER0) is None
    assert zk_client.get(ID0)[0] == b""  # MetaQ: kept for the slave, master URL dropped
    assert zk_client.get(slave)[0] == b"meta://10.1.2.5:8123"


def test_stop_with_sync_wait_sleeps_sync_time(zk_connect, zk_client, make_registry):
    registry = make_registry(zk_connect, sync_time_ms=300)
    registry.start(timeout_s=10)
    started = time.monotonic()
    registry.stop(timeout_s=5, sync_wait=True)
    assert time.monotonic() - started >= 0.3
    assert node(zk_client, MASTER0) is None


# ---- ZooKeeper itself going away -------------------------------------------------------------


def test_registry_comes_back_after_zookeeper_restarts(
    private_zk, private_client, make_registry
):
    zk = private_zk()
    states = StateLog()
    # A short session: a reconnect that lands while the restarted server is still loading can
    # hang until kazoo's connect timeout (the session timeout), after which the session is
    # expired and the registry must register again from scratch; both outcomes are fine here.
    registry = make_registry(
        zk.connect_string, config_checksum=CHECKSUM, on_change=states, session_timeout_ms=4000
    )
    registry.start(timeout_s=10)
    assert registry.register_topic("test", 2)

    zk.stop()
    wait_until(lambda: registry.state == "suspended", timeout_s=10)
    assert not registry.registered
    assert registry.register_topic("while-down", 1, timeout_s=0) is False

    zk.start()  # same port, same data directory
    assert registry.wait_registered(30), f"not registered again: {registry.state}"
    session = registry.session_id
    client = private_client(zk.connect_string)
    assert_broker_registered(client, session)
    assert_topic_registered(client, "test", 2, session)
    assert_topic_registered(client, "while-down", 1, session)
    assert "suspended" in states.states


def test_stop_with_zookeeper_unreachable_returns_within_its_timeout(private_zk, make_registry):
    zk = private_zk()
    registry = make_registry(zk.connect_string)
    registry.start(timeout_s=10)
    assert registry.register_topic("test", 2)
    zk.stop()
    wait_until(lambda: registry.state == "suspended", timeout_s=10)

    started = time.monotonic()
    registry.stop(timeout_s=2.0, sync_wait=True)
    assert time.monotonic() - started < 2.5
    assert registry.state == "stopped"


def test_stop_with_zookeeper_hung_returns_within_its_timeout(private_zk, make_registry):
    """A frozen server (SIGSTOP): the connection looks alive, every call would hang."""
    zk = private_zk()
    registry = make_registry(zk.connect_string)
    registry.start(timeout_s=10)
    assert registry.register_topic("test", 2)
    os.kill(zk.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        registry.stop(timeout_s=2.0, sync_wait=True)
        assert time.monotonic() - started < 2.5
        assert registry.state == "stopped"
    finally:
        os.kill(zk.pid, signal.SIGCONT)


def test_start_fails_clearly_when_zookeeper_is_unreachable(make_registry):
    connect = f"127.0.0.1:{free_port()}"
    registry = make_registry(connect, connection_timeout_ms=1000)
    started = time.monotonic()
    with pytest.raises(ZooKeeperError) as excinfo:
        registry.start(timeout_s=10)
    assert time.monotonic() - started < 5
    assert connect in str(excinfo.value)
    assert not isinstance(excinfo.value, DuplicateBrokerError)
    assert registry.state == "stopped"


def test_start_fails_clearly_when_the_chroot_is_missing(zk_hosts, make_registry):
    connect = f"{zk_hosts}/metaq-test-missing-{uuid.uuid4().hex}"
    registry = make_registry(connect)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kazoo's own "No chroot path exists" warning
        with pytest.raises(ZooKeeperError, match="chroot"):
            registry.start(timeout_s=10)
    assert registry.state == "stopped"


def test_id_taken_while_disconnected_is_not_overwritten(
    zk_connect, zk_client, make_registry, caplog
):
    registry = make_registry(zk_connect)
    registry.start(timeout_s=10)
    assert registry.register_topic("test", 2)
    session = registry.session_id
    # Another broker takes id 0 (its own session) while ours looks away.
    zk_client.delete(MASTER0)
    zk_client.create(MASTER0, URL0_OTHER.encode(), ephemeral=True)
    with caplog.at_level("ERROR", logger="metaq_fast.zk.registry"):
        drop_connection(registry.client)
        wait_until(
            lambda: any("already registered by " + URL0_OTHER in r.getMessage()
                        for r in caplog.records),
            timeout_s=10,
        )
    assert not registry.registered
    data, stat = zk_client.get(MASTER0)
    assert data == URL0_OTHER.encode() and stat.ephemeralOwner == zk_client.client_id[0]
    # Once the other broker is gone the registry takes its id back by itself.
    zk_client.delete(MASTER0)
    assert registry.wait_registered(15)
    assert registry.session_id == session
    assert_broker_registered(zk_client, session, checksum=None)
    assert_topic_registered(zk_client, "test", 2, session)
