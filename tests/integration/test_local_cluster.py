"""``metaq-server --local --brokers 3`` (issue 13 item 5): a ZooKeeper and three brokers in the
foreground, as ``./scripts/run-local.sh --brokers 3`` runs it.

The launcher runs from a copy of conf/server.ini moved to free ports and a temporary data path
(never the real 2181/8123), in its own session as a terminal runs it. ZooKeeper must list the
three brokers and the topic's partitions of all three; the project's Producer spreads messages
over all three (round robin); a broker stopped with ``kill`` is reported by the launcher while
the other two keep serving and the producer moves to them; SIGINT (Ctrl-C) stops everything:
exit 0, no broker, worker or ZooKeeper left. Real processes, a real ZooKeeper, no mocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from metaq_fast.benchtool.cluster import rewrite_ini
from metaq_fast.client.producer import Producer
from metaq_fast.pdeath import die_with_parent
from metaq_fast.zk.server import find_zookeeper, zookeeper_answers
from tests.brokers import REPO
from tests.helpers import free_port, skip_or_fail, wait_until

TOPIC = "test"  # conf/server.ini: 4 partitions per broker
FIRST_ID = 5  # not 0: the ids must follow brokerId
BROKERS = 3


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1 a moment ago."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise AssertionError(f"no {count} consecutive free ports found")


def cluster_ini(tmp_path: Path, zk_port: int, base_port: int) -> Path:
    """conf/server.ini with ports, data path and ZooKeeper moved away from the real ones."""
    text = (REPO / "conf" / "server.ini").read_text()
    path = tmp_path / "server.ini"
    path.write_text(rewrite_ini(text, {
        "system": {"brokerId": str(FIRST_ID), "serverPort": str(base_port),
                   "dashboardHttpPort": str(base_port + BROKERS), "workerCount": "1",
                   "dataPath": str(tmp_path / "data")},
        "zookeeper": {"zk.zkConnect": f"127.0.0.1:{zk_port}", "zk.zkSyncTimeMs": "200"}}))
    return path


def launch(tmp_path: Path, ini: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    output = tmp_path / "launcher.out"
    with open(output, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "metaq_fast.cli", "-f", str(ini), "--local", *extra],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path,
            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
            preexec_fn=die_with_parent)
    return proc, output


def gone(pid: int) -> bool:
    """No process ``pid`` any more (a zombie counts as gone: it runs nothing)."""
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True


def started_pids(info: dict) -> list[int]:
    """Every pid the launcher's ready file names: brokers, their workers, the ZooKeeper."""
    pids = [info.get("zookeeper", {}).get("pid")]
    for broker in info.get("brokers", []):
        pids += [broker["pid"], *map(int, broker["workers"].values())]
    return [pid for pid in pids if pid]


def kill_by_pid(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def send(producer: Producer, count: int) -> list[int]:
    """Broker ids of ``count`` messages sent with the default (round robin) selector."""
    futures = [producer.send(TOPIC, b"m%d" % i) for i in range(count)]
    producer.flush(30)
    return [future.result(30).partition.broker_id for future in futures]


@pytest.mark.zk
@pytest.mark.timeout(240)
def test_three_brokers_round_robin_failover_and_ctrl_c(tmp_path):
    try:
        find_zookeeper()
    except Exception as e:  # noqa: BLE001 - same rule as the session fixture (zk_hosts)
        skip_or_fail(str(e))
    zk_port, base_port = free_port(), consecutive_free_ports(2 * BROKERS)
    zk_connect = f"127.0.0.1:{zk_port}"
    ready = tmp_path / "cluster.json"
    proc, output = launch(tmp_path, cluster_ini(tmp_path, zk_port, base_port),
                          "--brokers", str(BROKERS), "--ready-file", str(ready))
    text = lambda: output.read_text(errors="replace")  # noqa: E731
    info: dict = {}
    zk = producer = None
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, timeout_s=120,
                   interval_s=0.05, message=text)
        assert proc.poll() is None, text()
        info = json.loads(ready.read_text())
        brokers = {b["broker_id"]: b for b in info["brokers"]}
        ids = list(range(FIRST_ID, FIRST_ID + BROKERS))
        assert sorted(brokers) == ids
        assert [brokers[i]["port"] for i in ids] == [base_port + n for n in range(BROKERS)]
        assert [brokers[i]["dashboard_port"] for i in ids] == [base_port + BROKERS + n
                                                               for n in range(BROKERS)]
        assert info["zookeeper"]["started"] and info["zookeeper"]["connect"] == zk_connect
        for b in brokers.values():  # beside dataPath, each its own
            assert Path(b["data_path"]) == tmp_path / f"broker-{b['broker_id']}" / "data"
            assert b["url"] in text() and str(b["pid"]) in text()
        assert f"-z {zk_connect} brokers" in text() and "kill " in text(), text()

        zk = KazooClient(hosts=zk_connect, timeout=5)
        zk.start(timeout=10)
        assert sorted(map(int, zk.get_children("/meta/brokers/ids"))) == ids
        wait_until(lambda: sorted(zk.get_children(f"/meta/brokers/topics-pub/{TOPIC}"))
                   == [f"{i}-m" for i in ids], timeout_s=30)

        producer = Producer(zk_connect)
        wait_until(lambda: len(producer.partitions_for(TOPIC)) == 4 * BROKERS, timeout_s=30)
        assert set(send(producer, 4 * BROKERS * 2)) == set(ids)  # round robin: every broker
        for i in ids:
            assert any((tmp_path / f"broker-{i}" / "data").glob(f"{TOPIC}-*")), i

        victim = brokers[ids[1]]
        os.kill(victim["pid"], signal.SIGTERM)  # the README's `kill <pid>`
        wait_until(lambda: f"broker {victim['broker_id']} (pid {victim['pid']}) exited" in text(),
                   timeout_s=60, message=text)
        assert f"{BROKERS - 1} of {BROKERS} brokers still running" in text()
        assert proc.poll() is None, text()
        survivors = [i for i in ids if i != victim["broker_id"]]
        assert sorted(map(int, zk.get_children("/meta/brokers/ids"))) == survivors
        wait_until(lambda: {p.broker_id for p in producer.partitions_for(TOPIC)} == set(survivors),
                   timeout_s=30)
        assert set(send(producer, 4 * BROKERS * 2)) == set(survivors)
        producer.close()
        producer = None
        zk.stop()  # before its server stops, or it retries into the teardown
        zk.close()
        zk = None

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        assert proc.wait(60) == 0, text()
        assert "local cluster stopped" in text()
        pids = started_pids(info)
        assert len(pids) == 1 + 2 * BROKERS  # one worker each (workerCount=1)
        wait_until(lambda: all(gone(pid) for pid in pids), timeout_s=15,
                   message=lambda: f"still running: {[p for p in pids if not gone(p)]}")
        assert not zookeeper_answers("127.0.0.1", zk_port, 1.0)
        assert not ready.exists()
    finally:
        if producer is not None:
            producer.close(5)
        if zk is not None:
            zk.stop()
            zk.close()
        if proc.poll() is None:
            proc.kill()  # its children die with it (parent-death signal); make sure by PID
            proc.wait(10)
        kill_by_pid(started_pids(info))
        shutil.rmtree(tmp_path / "zookeeper", ignore_errors=True)


def test_a_taken_port_or_a_count_out_of_range_is_refused_before_anything_starts(tmp_path):
    zk_port, base_port = free_port(), consecutive_free_ports(2 * BROKERS)
    ini = cluster_ini(tmp_path, zk_port, base_port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base_port + 1))  # broker FIRST_ID + 1's port
        taken.listen()
        for extra, expected in ((("--brokers", "3"), f"port {base_port + 1} on 127.0.0.1"),
                                (("--brokers", "33"), "--brokers must be 1..32"),
                                (("--brokers", "0"), "--brokers must be 1..32")):
            began = time.monotonic()
            proc, output = launch(tmp_path, ini, *extra)
            try:
                assert proc.wait(30) == 2, output.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            lines = output.read_text().splitlines()
            assert len(lines) == 1 and expected in lines[0], lines
            assert time.monotonic() - began < 30
            output.unlink()
    assert not (tmp_path / "zookeeper").exists() and not any(tmp_path.glob("broker-*"))
    assert not zookeeper_answers("127.0.0.1", zk_port, 0.5)


@pytest.mark.zk
@pytest.mark.timeout(240)
def test_slaves_start_with_their_master_and_take_over_when_it_is_killed(tmp_path):
    """``--slaves 1``: broker FIRST_ID and its slave 0 on the next port; killing the master
    (the README's ``kill <pid>``) makes the slave master in epoch 2."""
    try:
        find_zookeeper()
    except Exception as e:  # noqa: BLE001 - same rule as the session fixture (zk_hosts)
        skip_or_fail(str(e))
    zk_port, base_port = free_port(), consecutive_free_ports(2 * BROKERS)
    zk_connect = f"127.0.0.1:{zk_port}"
    ready = tmp_path / "cluster.json"
    proc, output = launch(tmp_path, cluster_ini(tmp_path, zk_port, base_port),
                          "--brokers", "1", "--slaves", "1", "--ready-file", str(ready))
    text = lambda: output.read_text(errors="replace")  # noqa: E731
    info: dict = {}
    zk = None
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, timeout_s=120,
                   interval_s=0.05, message=text)
        assert proc.poll() is None, text()
        info = json.loads(ready.read_text())
        master, slave = info["brokers"]
        assert (master["port"], slave["port"]) == (base_port, base_port + 1)
        assert Path(slave["data_path"]) == tmp_path / f"broker-{FIRST_ID}-s0" / "data"
        assert "replication" in text() and f"{FIRST_ID} slave 0" in text()
        zk = KazooClient(hosts=zk_connect, timeout=5)
        zk.start(timeout=10)
        ids = f"/meta/brokers/ids/{FIRST_ID}"
        wait_until(lambda: sorted(zk.get_children(ids)) == ["master", "master_config_checksum",
                                                            "slave0"], timeout_s=30)
        state = lambda: json.loads(zk.get(f"/meta/replication/{FIRST_ID}")[0])  # noqa: E731
        wait_until(lambda: state()["isr"] == ["m", "s0"], timeout_s=30, message=state)
        os.kill(master["pid"], signal.SIGTERM)
        wait_until(lambda: state()["leader"] == "s0", timeout_s=30, message=state)
        assert state()["epoch"] == 2
        assert zk.get(f"{ids}/master")[0].decode() == slave["url"]
        zk.stop()
        zk.close()
        zk = None
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, text()
    finally:
        if zk is not None:
            zk.stop()
            zk.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        kill_by_pid(started_pids(info))
        shutil.rmtree(tmp_path / "zookeeper", ignore_errors=True)
