"""Real ``metaq-server`` processes against a real ZooKeeper: registration, lifecycle and faults.

What MetaQ's reference (``metaq-protocol.md`` 6.1, 6.2 and the ZK vectors of 16.2) says a broker
does in ZooKeeper, checked on the nodes themselves with literal paths (not through
``metaq_fast.zk.paths``): registration at start, topics published on first put, a second
broker joining, ``kill -9`` (nodes go with the session), a server-side session expiry while the
supervisor is stopped (it registers again by itself), a ZooKeeper restart, a duplicate broker
id, SIGTERM, and local mode (``--local``: a ZooKeeper of its own, stopped with the broker).

Brokers come from the ``brokers`` fixture (tests/conftest.py; session timeout 4000 ms, sync time
100 ms). Every other process started here (private ZooKeepers, local-mode brokers) is stopped by
PID in a ``finally``. No fixed sleeps: ``wait_until`` everywhere.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from metaq_fast.protocol import ResultReply, ValueReply
from metaq_fast.zk.server import LocalZooKeeper, find_zookeeper, four_letter_word, zookeeper_answers
from tests.brokers import REPO, WireClient, die_with_parent, server_ini
from tests.helpers import free_port, skip_or_fail, wait_until

pytestmark = [pytest.mark.zk, pytest.mark.timeout(180)]

SESSION_TIMEOUT_S = 4.0  # zk.zkSessionTimeoutMs in tests.brokers.server_ini
TICK_S = 0.5  # the test ZooKeeper's tickTime (expiry is checked in whole ticks)
EXPIRY_WAIT_S = SESSION_TIMEOUT_S + 3.0
TOPICS = {"test": {"numPartitions": 2}}


# ---- helpers -----------------------------------------------------------------------------------


def node_paths(broker_id: int, topics: dict[str, bool] | None = None) -> list[str]:
    """The ephemeral nodes of a master broker; ``topics`` maps topic -> acceptPublish."""
    base = f"/meta/brokers/ids/{broker_id}"
    found = [f"{base}/master", f"{base}/master_config_checksum"]
    for topic, publish in (topics or {}).items():
        found.append(f"/meta/brokers/topics/{topic}/{broker_id}-m")
        if publish:
            found.append(f"/meta/brokers/topics-pub/{topic}/{broker_id}-m")
        found.append(f"/meta/brokers/topics-sub/{topic}/{broker_id}-m")
    return found


def read(zk, path: str):
    """(data as text, stat) of ``path``, or None when it does not exist."""
    got = zk.exists(path)
    if got is None:
        return None
    try:
        data, stat = zk.get(path)
    except Exception:  # deleted between exists and get
        return None
    return data.decode("utf-8"), stat


def present(zk, paths: list[str]) -> bool:
    return all(zk.exists(p) is not None for p in paths)


def absent(zk, paths: list[str]) -> bool:
    return all(zk.exists(p) is None for p in paths)


def owners(zk, paths: list[str]) -> set[int]:
    """The ephemeralOwner session ids of ``paths`` (0: persistent; missing nodes skipped)."""
    found = set()
    for path in paths:
        stat = zk.exists(path)
        if stat is not None:
            found.add(stat.ephemeralOwner)
    return found


def stats(zk, paths: list[str]) -> dict[str, tuple]:
    """Identity of each node: (creation zxid, modification zxid, owner, data)."""
    found = {}
    for path in paths:
        got = read(zk, path)
        found[path] = None if got is None else (got[1].czxid, got[1].mzxid,
                                                got[1].ephemeralOwner, got[0])
    return found


def assert_registered(zk, broker, broker_id: int, topics: dict[str, int]) -> None:
    """The ZK vectors of 16.2 for ``broker``: every node, its data, ephemeral where it must be.
    ``topics`` maps each expected topic (publish and subscribe accepted) to numPartitions."""
    base = f"/meta/brokers/ids/{broker_id}"
    assert re.fullmatch(r"meta://[^:/]+:\d+", broker.url), broker.url
    assert broker.url.endswith(f":{broker.port}")
    data, stat = read(zk, f"{base}/master")
    assert data == broker.url
    assert stat.ephemeralOwner != 0
    session = stat.ephemeralOwner
    data, stat = read(zk, base)
    assert (data, stat.ephemeralOwner) == (broker.url, 0)  # persistent, "for old clients"
    data, stat = read(zk, f"{base}/master_config_checksum")
    assert data == str(zlib.crc32(broker.config_path.read_bytes()))
    assert stat.ephemeralOwner == session
    for topic, parts in topics.items():
        data, stat = read(zk, f"/meta/brokers/topics/{topic}/{broker_id}-m")
        assert (data, stat.ephemeralOwner) == (str(parts), session), topic
        for kind in ("topics-pub", "topics-sub"):
            data, stat = read(zk, f"/meta/brokers/{kind}/{topic}/{broker_id}-m")
            expected = {"numParts": parts, "broker": f"{broker_id}-m"}
            assert json.loads(data) == expected, (kind, topic)
            assert stat.ephemeralOwner == session, (kind, topic)


def put(client: WireClient, opaque: int, topic: str = "test", partition: int = 0,
        body: bytes = b"hello") -> tuple[int, int, int]:
    """A put answered with 200: (msgId, partition, offset)."""
    reply = client.request(b"put %s %d %d 0 -1 %d\r\n%s" % (topic.encode(), partition, len(body),
                                                            opaque, body))
    assert isinstance(reply, ResultReply), reply
    assert (reply.code, reply.opaque) == (200, opaque), (reply.code, bytes(reply.body))
    msg_id, part, offset = bytes(reply.body).split(b" ")
    return int(msg_id), int(part), int(offset)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_matching(needle: bytes) -> list[int]:
    """Live processes whose command line contains ``needle`` (a /proc scan)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def group_alive(pgid: int) -> bool:
    """True while any process (zombies included) is in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def worker_pids(broker) -> list[int]:
    pids = [int(pid) for pid in broker.info["workers"].values()]
    assert pids and all(pid_alive(pid) for pid in pids)
    return pids


def session_ids(host: str, port: int) -> set[int]:
    """Session ids of the clients connected to a ZooKeeper now (``cons``)."""
    answer = four_letter_word(host, port, "cons") or ""
    return {int(sid, 16) for sid in re.findall(r"sid=0x([0-9a-f]+)", answer)}


@contextmanager
def kazoo(hosts: str) -> Iterator[KazooClient]:
    client = KazooClient(hosts=hosts, timeout=5)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@contextmanager
def private_zookeeper(data_dir: Path, port: int | None = None) -> Iterator[LocalZooKeeper]:
    """A LocalZooKeeper of this test only (test mode), stopped by PID at the end."""
    try:
        find_zookeeper()
    except Exception as e:  # noqa: BLE001 - same rule as the session fixture (zk_hosts)
        skip_or_fail(str(e))
    server = LocalZooKeeper(data_dir, port=port or free_port(), test_mode=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Putter(threading.Thread):
    """Puts on one connection in a loop, recording (monotonic time, ok) of each answer."""

    MAX_S = 120  # a bound even if the test never calls finish()

    def __init__(self, port: int):
        super().__init__(daemon=True, name="putter")
        self.client = WireClient(port)
        self.stop_event = threading.Event()
        self.results: list[tuple[float, bool]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        opaque = 0
        deadline = time.monotonic() + self.MAX_S
        try:
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                opaque += 1
                try:
                    put(self.client, opaque)
                    self.results.append((time.monotonic(), True))
                except AssertionError as e:
                    self.results.append((time.monotonic(), False))
                    self.errors.append(str(e))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            self.client.close()

    def ok_between(self, begin: float, end: float) -> int:
        return sum(1 for t, ok in self.results if ok and begin <= t <= end)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(15)
        assert not self.is_alive(), "putter thread hung"


# ---- 1. registration ---------------------------------------------------------------------------


def test_registration_nodes_match_the_reference(brokers, zk_connect, zk_client):
    broker = brokers("b0", zk_connect=zk_connect, broker_id=0, topics={
        "test": {"numPartitions": 2},
        "nopub": {"numPartitions": 3, "acceptPublish": "false"},
        "*": {"numPartitions": 4},
    })
    # The ready file is written after the supervisor registered the configured topics.
    assert_registered(zk_client, broker, 0, {"test": 2})
    assert zk_client.get_children("/meta/brokers/ids") == ["0"]
    assert sorted(zk_client.get_children("/meta/brokers/ids/0")) == [
        "master", "master_config_checksum"]
    # acceptPublish=false: legacy and sub nodes, no pub node.
    data, stat = read(zk_client, "/meta/brokers/topics/nopub/0-m")
    assert (data, stat.ephemeralOwner != 0) == ("3", True)
    assert zk_client.exists("/meta/brokers/topics-pub/nopub/0-m") is None
    data, _ = read(zk_client, "/meta/brokers/topics-sub/nopub/0-m")
    assert json.loads(data) == {"numParts": 3, "broker": "0-m"}
    # The pattern section itself is never published; a topic it matches only after a put.
    assert sorted(zk_client.get_children("/meta/brokers/topics")) == ["nopub", "test"]
    assert zk_client.exists("/meta/brokers/topics-pub/wild1") is None

    client = WireClient(broker.port)
    try:
        put(client, 1, topic="wild1", partition=3)
        put(client, 2)  # a configured topic's first put changes nothing in ZooKeeper
    finally:
        client.close()
    wait_until(lambda: present(zk_client, node_paths(0, {"wild1": True})), timeout_s=5,
               message="wild1 not registered after its first put")
    assert_registered(zk_client, broker, 0, {"test": 2, "wild1": 4})
    assert sorted(zk_client.get_children("/meta/brokers/topics")) == ["nopub", "test", "wild1"]
    # All ephemerals belong to one session.
    assert len(owners(zk_client, node_paths(0, {"test": True, "wild1": True}))) == 1


# ---- 2. a second broker joins ------------------------------------------------------------------


def test_second_broker_joins_while_the_first_serves(brokers, zk_connect, zk_client):
    first = brokers("b0", zk_connect=zk_connect, broker_id=0, topics=TOPICS)
    putter = Putter(first.port)
    putter.start()
    try:
        wait_until(lambda: putter.ok_between(0, time.monotonic()) >= 10, timeout_s=10,
                   message=lambda: f"no puts answered before the join: {putter.errors}")
        began = time.monotonic()
        second = brokers("b1", zk_connect=zk_connect, broker_id=1, topics=TOPICS)
        joined = time.monotonic()
        wait_until(lambda: putter.ok_between(joined, time.monotonic()) >= 10, timeout_s=10,
                   message=lambda: f"no puts answered after the join: {putter.errors}")
    finally:
        putter.finish()
    assert putter.errors == []
    assert putter.ok_between(began, joined) > 0, "no put answered while the second broker started"

    assert second.url != first.url
    assert sorted(zk_client.get_children("/meta/brokers/ids")) == ["0", "1"]
    assert_registered(zk_client, first, 0, {"test": 2})
    assert_registered(zk_client, second, 1, {"test": 2})
    for kind in ("topics", "topics-pub", "topics-sub"):
        assert sorted(zk_client.get_children(f"/meta/brokers/{kind}/test")) == ["0-m", "1-m"]
    sessions = owners(zk_client, node_paths(0, {"test": True}) + node_paths(1, {"test": True}))
    assert len(sessions) == 2  # one session per broker


# ---- 3. kill -9 --------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_removes_the_ephemeral_nodes_within_the_session_timeout(
        brokers, zk_connect, zk_client):
    victim = brokers("b0", zk_connect=zk_connect, broker_id=0, topics=TOPICS)
    brokers("b1", zk_connect=zk_connect, broker_id=1, topics=TOPICS)  # the survivor
    victim_nodes = node_paths(0, {"test": True})
    survivor_nodes = stats(zk_client, node_paths(1, {"test": True}))
    assert present(zk_client, victim_nodes)
    workers = worker_pids(victim)

    killed = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)  # the supervisor only; its workers follow by themselves
    victim.proc.wait(10)
    assert victim.proc.returncode == -signal.SIGKILL
    wait_until(lambda: not any(pid_alive(pid) for pid in workers), timeout_s=10,
               message=lambda: f"workers of the killed broker still alive: "
                               f"{[p for p in workers if pid_alive(p)]}")
    wait_until(lambda: absent(zk_client, victim_nodes), timeout_s=EXPIRY_WAIT_S,
               message=lambda: f"{time.monotonic() - killed:.1f} s after kill -9 still present: "
                               f"{[p for p in victim_nodes if zk_client.exists(p)]}")
    # The persistent ids/<id> node stays (nobody deleted it); the survivor is untouched.
    assert read(zk_client, "/meta/brokers/ids/0")[0] == victim.url
    assert stats(zk_client, list(survivor_nodes)) == survivor_nodes
    assert sorted(zk_client.get_children("/meta/brokers/topics-pub/test")) == ["1-m"]


# ---- 4. session expiry forced by a stopped supervisor ------------------------------------------


@pytest.mark.slow
def test_stopped_supervisor_loses_its_session_and_registers_again(brokers, zk_connect, zk_client):
    broker = brokers("b0", zk_connect=zk_connect, broker_id=0, topics=TOPICS)
    nodes = node_paths(0, {"test": True})
    (old_session,) = owners(zk_client, nodes)
    pid = broker.pid
    workers = worker_pids(broker)
    client = WireClient(broker.port)
    try:
        put(client, 1, partition=0)
        os.kill(pid, signal.SIGSTOP)
        try:
            # Connections are the workers' business: puts go on while the supervisor is stopped.
            put(client, 2, partition=0)
            put(client, 3, partition=1)
            wait_until(lambda: absent(zk_client, nodes), timeout_s=EXPIRY_WAIT_S,
                       message="the stopped broker's session did not expire")
            put(client, 4, partition=1)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: present(zk_client, nodes), timeout_s=10,
                   message=lambda: f"not registered again; missing "
                                   f"{[p for p in nodes if not zk_client.exists(p)]}")
        assert_registered(zk_client, broker, 0, {"test": 2})
        (new_session,) = owners(zk_client, nodes)
        assert new_session != old_session
        assert broker.alive() and broker.pid == pid
        assert worker_pids(broker) == workers
        put(client, 5, partition=0)
        put(client, 6, partition=1)
    finally:
        client.close()


# ---- 5. ZooKeeper restart ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["short", "longer_than_the_session"])
def test_broker_is_registered_again_after_zookeeper_restarts(brokers, tmp_path, outage):
    with private_zookeeper(tmp_path / "zk") as zk_server:
        broker = brokers("b0", zk_connect=zk_server.connect_string, broker_id=0, topics=TOPICS)
        nodes = node_paths(0, {"test": True})
        client = WireClient(broker.port)
        putter = None
        try:
            with kazoo(zk_server.connect_string) as zk:
                assert_registered(zk, broker, 0, {"test": 2})
            put(client, 1)
            zk_server.stop()
            stopped = time.monotonic()
            assert not zookeeper_answers(zk_server.host, zk_server.port)
            wait_until(lambda: "ZooKeeper session suspended" in broker.log_text(), timeout_s=10,
                       message="the broker did not notice ZooKeeper going away")
            put(client, 2, partition=0)  # serving goes on without ZooKeeper
            put(client, 3, partition=1)
            if outage != "short":
                # Serve puts for longer than a session timeout while ZooKeeper is down.
                putter = Putter(broker.port)
                putter.start()
                wait_until(lambda: putter.errors or putter.ok_between(
                    stopped + SESSION_TIMEOUT_S + 2 * TICK_S, time.monotonic()) > 0,
                    timeout_s=SESSION_TIMEOUT_S + 10,
                    message="puts not answered during the ZooKeeper outage")
                putter.finish()
                assert putter.errors == []
            zk_server.start()  # same port, same data directory
            with kazoo(zk_server.connect_string) as zk:
                def registered_by_a_live_session() -> bool:
                    sessions = owners(zk, nodes)
                    return (present(zk, nodes) and len(sessions) == 1
                            and sessions <= session_ids(zk_server.host, zk_server.port))

                wait_until(registered_by_a_live_session, timeout_s=15,
                           message="broker not registered by a connected session after restart")
                assert_registered(zk, broker, 0, {"test": 2})
            put(client, 4)
            assert broker.alive()
        finally:
            if putter is not None and putter.is_alive():
                putter.finish()
            client.close()
            broker.stop()  # while ZooKeeper still runs, so it leaves at once


# ---- 6. duplicate broker id --------------------------------------------------------------------


def test_duplicate_broker_id_refuses_to_start(brokers, zk_connect, zk_client):
    first = brokers("b0", zk_connect=zk_connect, broker_id=0, topics=TOPICS)
    nodes = ["/meta/brokers/ids/0", *node_paths(0, {"test": True})]
    before = stats(zk_client, nodes)
    duplicate = brokers("dup", zk_connect=zk_connect, broker_id=0, topics=TOPICS, start_now=False)
    with pytest.raises(AssertionError, match="metaq-server exited with"):
        duplicate.start(timeout_s=30)
    assert duplicate.proc.returncode not in (0, None)
    text = duplicate.log_text()
    assert re.search(r"broker id 0 is already registered by \S+ \(another live broker\)",
                     text), text
    assert first.url in text
    assert not group_alive(duplicate.pid), "the refused broker left processes behind"

    assert first.alive()
    assert stats(zk_client, nodes) == before
    assert_registered(zk_client, first, 0, {"test": 2})
    client = WireClient(first.port)
    try:
        put(client, 1)
    finally:
        client.close()


# ---- 7. graceful stop --------------------------------------------------------------------------


def test_sigterm_leaves_zookeeper_at_once_and_exits_0(brokers, zk_connect, zk_client):
    broker = brokers("b0", zk_connect=zk_connect, broker_id=0, topics=TOPICS)
    nodes = ["/meta/brokers/ids/0", *node_paths(0, {"test": True})]
    assert present(zk_client, nodes)
    workers = worker_pids(broker)
    began = time.monotonic()
    code = broker.stop(timeout_s=15)
    took = time.monotonic() - began
    assert code == 0, broker.log_tail()
    # Gone as soon as it exited: deleted by the broker, not by a session timeout.
    assert absent(zk_client, nodes)
    assert took < SESSION_TIMEOUT_S, took
    assert zk_client.get_children("/meta/brokers/ids") == []
    assert zk_client.get_children("/meta/brokers/topics/test") == []
    assert not any(pid_alive(pid) for pid in workers)


# ---- 8. local mode -----------------------------------------------------------------------------


def local_ini(tmp_path: Path, zk_port: int) -> Path:
    path = tmp_path / "server.ini"
    path.write_text(server_ini(data_path=tmp_path / "data", zk_connect=f"127.0.0.1:{zk_port}",
                               topics=TOPICS))
    return path


@contextmanager
def local_broker(tmp_path: Path, ini: Path) -> Iterator[tuple[subprocess.Popen, Path, float]]:
    """``metaq-server -f ini --local`` in its own process group, as a terminal runs it; yields
    (process, log path, seconds from launch to the ready file). Killed by PID at the end."""
    ready = tmp_path / "ready.json"
    log_path = tmp_path / "broker.log"
    with open(log_path, "ab") as log:
        began = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "metaq_fast.cli", "-f", str(ini), "--local", "--ready-file",
             str(ready)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
            preexec_fn=die_with_parent)
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, timeout_s=60,
                   interval_s=0.01, message=lambda: log_path.read_text(errors="replace"))
        assert proc.poll() is None, log_path.read_text(errors="replace")
        yield proc, log_path, time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if group_alive(proc.pid):  # workers left behind by a failed test
            wait_until(lambda: not group_alive(proc.pid), timeout_s=10,
                       message="workers of the local broker did not exit")


def put_and_get(port: int) -> None:
    client = WireClient(port)
    try:
        _, _, offset = put(client, 1, body=b"local hello")
        reply = client.request(b"get test g 0 %d 1024 2\r\n" % offset)
        assert isinstance(reply, ValueReply), reply
        assert bytes(reply.data).endswith(b"local hello")
    finally:
        client.close()


@pytest.mark.slow
def test_local_mode_starts_and_stops_its_own_zookeeper(tmp_path):
    try:
        find_zookeeper()
    except Exception as e:  # noqa: BLE001 - same rule as the session fixture (zk_hosts)
        skip_or_fail(str(e))
    zk_port = free_port()
    ini = local_ini(tmp_path, zk_port)
    zoo_cfg = str(tmp_path / "zookeeper" / "zoo.cfg").encode()
    zk_pids: list[int] = []
    try:
        with local_broker(tmp_path, ini) as (proc, log_path, cold_start_s):
            print(f"\nlocal mode cold start (launch -> ready file): {cold_start_s:.2f} s")
            zk_pids[:] = pids_matching(zoo_cfg)
            assert len(zk_pids) == 1, zk_pids
            assert zookeeper_answers("127.0.0.1", zk_port)
            info = json.loads((tmp_path / "ready.json").read_text())
            with kazoo(f"127.0.0.1:{zk_port}") as zk:
                data, stat = read(zk, "/meta/brokers/ids/0/master")
                assert data == info["url"] and stat.ephemeralOwner != 0
                assert json.loads(read(zk, "/meta/brokers/topics-pub/test/0-m")[0]) == {
                    "numParts": 2, "broker": "0-m"}
            put_and_get(info["port"])
            assert "local mode: started ZooKeeper" in log_path.read_text()

            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
            assert proc.wait(30) == 0, log_path.read_text()
            # Nothing left: the broker's group, and the ZooKeeper in its own session.
            wait_until(lambda: not group_alive(proc.pid), timeout_s=10,
                       message="the broker's process group is not empty")
            wait_until(lambda: not any(pid_alive(pid) for pid in zk_pids), timeout_s=10,
                       message=f"local ZooKeeper {zk_pids} still running")
            assert pids_matching(zoo_cfg) == []
            assert not zookeeper_answers("127.0.0.1", zk_port, timeout_s=0.5)
            assert "stopping the local ZooKeeper" in log_path.read_text()
    finally:
        # Only when the test failed before its own checks: the ZooKeeper this test's broker
        # started (its PIDs as seen while it ran, else found by this test's own zoo.cfg path).
        for pid in zk_pids or pids_matching(zoo_cfg):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_local_mode_reuses_an_answering_zookeeper_and_leaves_it_running(tmp_path):
    with private_zookeeper(tmp_path / "zk") as zk_server:
        ini = local_ini(tmp_path, zk_server.port)
        with local_broker(tmp_path, ini) as (proc, log_path, _):
            assert f"a ZooKeeper already answers on 127.0.0.1:{zk_server.port}; using it" in (
                log_path.read_text())
            assert not (tmp_path / "zookeeper").exists()  # no second server was prepared
            info = json.loads((tmp_path / "ready.json").read_text())
            with kazoo(zk_server.connect_string) as zk:
                assert read(zk, "/meta/brokers/ids/0/master")[0] == info["url"]
                put_and_get(info["port"])
                os.killpg(proc.pid, signal.SIGINT)
                assert proc.wait(30) == 0, log_path.read_text()
                assert zk.exists("/meta/brokers/ids/0/master") is None
            assert "stopping the local ZooKeeper" not in log_path.read_text()
        assert zk_server.is_running()
        assert zookeeper_answers(zk_server.host, zk_server.port)
