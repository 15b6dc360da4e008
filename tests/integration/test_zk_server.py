"""Integration tests of metaq_fast.zk.server and the ZooKeeper fixtures, against real servers.

Every LocalZooKeeper a test starts goes through the ``local_zk`` factory, which stops it by PID
at teardown even when the test fails.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from metaq_fast.errors import ZooKeeperError
from metaq_fast.zk import paths
from metaq_fast.zk.server import (
    LocalZooKeeper,
    NORMAL_EXIT_CODES,
    find_zookeeper,
    four_letter_word,
    zookeeper_answers,
)
from tests.helpers import drop_connection, expire_session, free_port, skip_or_fail, wait_until

pytestmark = pytest.mark.zk


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(pid, 0); Popen.wait() reaps ours, so this means alive.
    return False


def _host_port(hosts: str) -> tuple[str, int]:
    first = hosts.split(",")[0].split("/")[0]
    host, _, port = first.rpartition(":")
    return host.strip("[]"), int(port)


@pytest.fixture
def local_zk(tmp_path: Path) -> Iterator[Callable[..., LocalZooKeeper]]:
    """Factory of LocalZooKeeper instances (not started) in tmp_path; all stopped at teardown."""
    try:
        find_zookeeper()
    except ZooKeeperError as e:
        skip_or_fail(str(e))
    servers: list[LocalZooKeeper] = []

    def make(name: str = "zk", **kwargs) -> LocalZooKeeper:
        kwargs.setdefault("test_mode", True)
        server = LocalZooKeeper(tmp_path / name, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        pid = server.pid
        server.stop()
        if pid is not None:
            assert _pid_gone(pid), f"ZooKeeper pid {pid} still alive after stop()"


# ---- the session server and the probes ---------------------------------------------------


def test_session_server_answers(zk_hosts, zk_server):
    host, port = _host_port(zk_hosts)
    assert zookeeper_answers(host, port)
    srvr = four_letter_word(host, port, "srvr")
    assert srvr is not None and "Mode: standalone" in srvr
    if zk_server is not None:
        assert zk_server.is_running()
        assert zk_hosts == zk_server.connect_string == f"127.0.0.1:{zk_server.port}"
        assert f"dataDir={zk_server.zk_data_path}/version-2" in four_letter_word(host, port, "conf")


def test_zookeeper_answers_false_when_nothing_or_something_else_listens():
    port = free_port()
    assert zookeeper_answers("127.0.0.1", port) is False
    assert four_letter_word("127.0.0.1", port, "srvr") is None

    # A non-ZooKeeper server that answers with something else and closes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve():
            conn, _ = listener.accept()
            with conn:
                conn.recv(16)
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        assert zookeeper_answers("127.0.0.1", listener.getsockname()[1]) is False
        thread.join(5)


def test_four_letter_word_validates_word():
    with pytest.raises(ValueError):
        four_letter_word("127.0.0.1", 1, "stat\n")
    with pytest.raises(ValueError):
        four_letter_word("127.0.0.1", 1, "sr")


# ---- fixtures: chroot, kazoo, expiry -------------------------------------------------------


# chroots the tests above test_chroot_is_deleted_after_the_test used, for it to check
CHROOTS_USED: list[str] = []


def test_kazoo_create_and_ephemeral_through_chroot(zk_client, zk_connect, zk_chroot, zk_hosts):
    CHROOTS_USED.append(zk_chroot)
    assert zk_connect == zk_hosts + zk_chroot
    assert zk_chroot.startswith("/metaq-test-") and len(zk_chroot) == len("/metaq-test-") + 32
    master = paths.broker_master_path("/meta", 0)
    url = paths.encode_broker_url("127.0.0.1", 8123)
    zk_client.create(master, url, ephemeral=True, makepath=True)
    pub = paths.topics_pub_broker_path("/meta", "test", 0)
    zk_client.create(pub, paths.encode_topic_broker_json(2, 0), ephemeral=True, makepath=True)
    data, stat = zk_client.get(master)
    assert paths.parse_broker_url(data) == ("127.0.0.1", 8123)
    assert stat.ephemeralOwner == zk_client.client_id[0]

    # Seen from outside the chroot, the node sits under it.
    outside = KazooClient(hosts=zk_hosts, timeout=5)
    outside.start(timeout=10)
    try:
        assert outside.exists(zk_chroot + master) is not None
        data, _ = outside.get(zk_chroot + "/meta/brokers/topics-pub/test/0-m")
        assert paths.parse_topic_broker_json(data) == (2, "0-m")
    finally:
        outside.stop()
        outside.close()


def test_expire_session_really_deletes_ephemerals(zk_connect):
    victim = KazooClient(hosts=zk_connect, timeout=5)
    observer = KazooClient(hosts=zk_connect, timeout=5)
    states: list[KazooState] = []
    victim.add_listener(states.append)
    victim.start(timeout=10)
    observer.start(timeout=10)
    try:
        node = paths.broker_master_path("/meta", 0)
        victim.create(node, b"meta://127.0.0.1:8123", ephemeral=True, makepath=True)
        assert observer.exists(node) is not None
        deleted = threading.Event()

        @observer.DataWatch(node)
        def watch(data, stat, event=None):
            if data is None and event is not None:
                deleted.set()

        old_session = expire_session(victim, zk_connect)
        # The server deleted it: the observer's watch fired (a client-side fake would not).
        assert deleted.wait(5), "observer did not see the ephemeral deleted"
        assert observer.exists(node) is None
        assert KazooState.LOST in states
        # The victim reconnects by itself on a new session; ephemerals are not re-created.
        wait_until(lambda: victim.connected and victim.client_id[0] != old_session,
                   message="victim did not reconnect with a new session")
        assert victim.exists(node) is None
        victim.create(node, b"meta://127.0.0.1:8123", ephemeral=True)
        _, stat = observer.get(node)
        assert stat.ephemeralOwner == victim.client_id[0] != old_session
    finally:
        for client in (victim, observer):
            client.stop()
            client.close()


def test_drop_connection_keeps_session_and_ephemerals(zk_client):
    zk_client.create("/e", b"x", ephemeral=True)
    session = zk_client.client_id[0]
    drop_connection(zk_client)
    assert zk_client.client_id[0] == session
    assert zk_client.exists("/e") is not None


def test_two_chroots_are_isolated(zk_client, zk_hosts, zk_chroot):
    CHROOTS_USED.append(zk_chroot)
    other_chroot = f"/metaq-test-other-{os.getpid()}-{id(zk_client):x}"
    admin = KazooClient(hosts=zk_hosts, timeout=5)
    admin.start(timeout=10)
    try:
        admin.create(other_chroot)
        other = KazooClient(hosts=zk_hosts + other_chroot, timeout=5)
        other.start(timeout=10)
        try:
            zk_client.create("/meta/brokers/ids/0/master", b"a", ephemeral=True, makepath=True)
            assert other.exists("/meta") is None
            other.create("/meta/brokers/ids/1/master", b"b", ephemeral=True, makepath=True)
            assert zk_client.get_children("/meta/brokers/ids") == ["0"]
            assert other.get_children("/meta/brokers/ids") == ["1"]
        finally:
            other.stop()
            other.close()
    finally:
        admin.delete(other_chroot, recursive=True)
        admin.stop()
        admin.close()


def test_chroot_is_deleted_after_the_test(zk_server, zk_admin):
    # The chroots the earlier tests of this module used (both held nodes) are gone. On our own
    # server no chroot at all is left; a shared $ZK_HOSTS may hold chroots of other runs.
    if not CHROOTS_USED:
        skip_or_fail("run with the earlier tests of this module: they record their chroots")
    children = zk_admin.get_children("/")
    assert [c for c in CHROOTS_USED if c.lstrip("/") in children] == []
    if zk_server is not None:
        assert [c for c in children if c.startswith("metaq-test-")] == []


# ---- LocalZooKeeper lifecycle --------------------------------------------------------------


def test_start_answers_and_stop_leaves_no_process(local_zk):
    server = local_zk()
    assert not server.is_running() and server.pid is None and server.stop() is None
    server.start()
    pid = server.pid
    assert server.is_running() and pid is not None
    assert server.port != 0 and server.connect_string == f"127.0.0.1:{server.port}"
    assert zookeeper_answers("127.0.0.1", server.port)
    assert server.config_path.is_file() and server.log_path.is_file()
    assert "forceSync=no" in server.config_text()

    client = KazooClient(hosts=server.connect_string, timeout=5)
    client.start(timeout=10)
    client.create("/x", b"1")
    client.stop()
    client.close()

    code = server.stop()
    assert code in NORMAL_EXIT_CODES and code == server.returncode
    assert not server.is_running()
    assert _pid_gone(pid)
    assert not zookeeper_answers("127.0.0.1", server.port, timeout_s=0.5)
    assert server.stop() == code  # idempotent


def test_restart_on_same_port_keeps_data(local_zk):
    server = local_zk()
    server.start()
    port = server.port
    client = KazooClient(hosts=server.connect_string, timeout=5)
    client.start(timeout=10)
    client.create("/persisted", b"v")
    client.stop()
    client.close()
    server.stop()

    server.start()
    assert server.port == port
    client = KazooClient(hosts=server.connect_string, timeout=5)
    client.start(timeout=10)
    try:
        assert client.get("/persisted")[0] == b"v"
    finally:
        client.stop()
        client.close()


def test_context_manager(local_zk, tmp_path):
    server = local_zk("ctx")
    with server as running:
        assert running is server and server.is_running()
        pid = server.pid
    assert not server.is_running() and _pid_gone(pid)


def test_start_on_port_served_by_another_zookeeper_fails_clearly(local_zk):
    first = local_zk("first")
    first.start()
    second = local_zk("second", port=first.port)
    expected = rf"127\.0\.0\.1:{first.port}.*already accepts connections.*a ZooKeeper answers"
    with pytest.raises(ZooKeeperError, match=expected):
        second.start()
    assert not second.is_running()
    assert first.is_running() and zookeeper_answers("127.0.0.1", first.port)


def test_start_fails_fast_when_the_jvm_cannot_bind(local_zk):
    """A port bound but not listening passes the connect probe; the JVM's BindException must
    be reported at once, with the log tail, and the process be gone."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        server = local_zk(port=port)
        expected = r"could not bind.*already in use(?s:.*)BindException"
        with pytest.raises(ZooKeeperError, match=expected):
            server.start(timeout_s=20)
        assert not server.is_running()
        assert server.returncode not in (None, 0)


def test_port_zero_retries_when_the_picked_port_is_taken(local_zk, monkeypatch):
    import metaq_fast.zk.server as server_module

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    taken = blocker.getsockname()[1]
    picks = iter([taken])
    real_free_port = server_module._free_port
    monkeypatch.setattr(
        server_module, "_free_port", lambda host: next(picks, None) or real_free_port(host)
    )
    try:
        server = local_zk()
        server.start()
        assert server.port != taken and zookeeper_answers("127.0.0.1", server.port)
    finally:
        blocker.close()


def test_production_mode_honours_30s_sessions(local_zk):
    server = local_zk("prod", test_mode=False)
    text = server.config_text()
    assert "tickTime=2000" in text and "maxSessionTimeout=60000" in text
    assert "forceSync" not in text and "minSessionTimeout" not in text
    server.start()
    client = KazooClient(hosts=server.connect_string, timeout=30)
    client.start(timeout=10)
    try:
        session = f"sid=0x{client.client_id[0]:x}"
        cons = wait_until(lambda: four_letter_word("127.0.0.1", server.port, "cons"))
        line = next(l for l in cons.splitlines() if session in l)
        assert "to=30000" in line, line
    finally:
        client.stop()
        client.close()


def test_test_mode_allows_one_second_sessions(local_zk):
    server = local_zk()
    assert "tickTime=500" in server.config_text()
    server.start()
    client = KazooClient(hosts=server.connect_string, timeout=1)
    client.start(timeout=10)
    try:
        cons = four_letter_word("127.0.0.1", server.port, "cons")
        line = next(l for l in cons.splitlines() if f"sid=0x{client.client_id[0]:x}" in l)
        assert "to=1000" in line, line
    finally:
        client.stop()
        client.close()


def test_missing_java_or_jar_is_a_clear_error(tmp_path, monkeypatch):
    server = LocalZooKeeper(tmp_path / "nojar", zookeeper_jar=str(tmp_path / "missing.jar"))
    with pytest.raises(ZooKeeperError, match="apt-get install zookeeper"):
        server.start()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ZooKeeperError, match="no java executable.*apt-get install zookeeper"):
        LocalZooKeeper(tmp_path / "nojava").start()
    assert not (tmp_path / "nojava").exists()  # nothing written before the check


def test_exit_during_startup_reports_log(local_zk):
    server = local_zk(heap_mb=16)
    # An invalid value in zoo.cfg makes ZooKeeper exit with status 2 at once.
    server.config_text = lambda: "tickTime=2000  # comments must be on their own line\n"
    expected = r"exited with code \d+ during start-up(?s:.*)NumberFormatException"
    with pytest.raises(ZooKeeperError, match=expected):
        server.start()
    assert not server.is_running()


def test_constructor_validates():
    with pytest.raises(ValueError):
        LocalZooKeeper("/tmp/x", port=70000)
    with pytest.raises(ValueError):
        LocalZooKeeper("/tmp/x", tick_time_ms=0)
    with pytest.raises(ValueError):
        LocalZooKeeper("/tmp/x", heap_mb=8)
    with pytest.raises(ValueError, match="IP address"):
        LocalZooKeeper("/tmp/x", host="localhost")
    with pytest.raises(ZooKeeperError):
        LocalZooKeeper("/tmp/x").connect_string  # no port before start()



def test_unusable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ZooKeeperError, match="cannot start ZooKeeper in"):
        LocalZooKeeper(blocker / "zk", test_mode=True).start()
