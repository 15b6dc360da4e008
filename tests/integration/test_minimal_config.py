"""A broker starts from a minimal server.ini (issue 11 item 9): ``[system]`` with ``brokerId``
and one ``[topic=...]``; MetaQ's demanded keys take MetaConfig's defaults, ``zk.zkConnect``
comes from ``--zk-connect``. A file without ``brokerId`` is refused, saying the key is absent.

Real ZooKeeper (conftest), real ``metaq-server`` processes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.brokers import REPO, WireClient

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

# Minimal, except that the ports are free ones: the defaults (8123, 8120) may be taken here.
MINIMAL = "[system]\nbrokerId=5\nserverPort=0\ndashboardHttpPort=-1\n\n[topic=orders]\n"


def test_minimal_ini_starts_registers_and_serves(brokers, zk_connect, zk_client, tmp_path):
    broker = brokers("minimal", start_now=False)
    broker.write_config = lambda: broker.config_path.write_text(MINIMAL)
    broker.start(extra_args=["--zk-connect", zk_connect, "--data-path", str(tmp_path / "data")])
    assert "numPartitions" not in broker.config_path.read_text()

    data, _ = zk_client.get("/meta/brokers/ids/5/master")
    assert data.decode() == broker.url
    for kind in ("topics-pub", "topics-sub"):
        data, _ = zk_client.get(f"/meta/brokers/{kind}/orders/5-m")
        assert json.loads(data) == {"numParts": 1, "broker": "5-m"}  # numPartitions default 1

    client = WireClient(broker.port)
    try:
        reply = client.request(b"put orders 0 5 0 -1 1\r\nhello")
        assert reply.code == 200, bytes(reply.body)
        config = bytes(client.request(b"stats config 2\r\n").body).decode()
        stats = bytes(client.request(b"stats  3\r\n").body).decode()
    finally:
        client.close()
    assert config.count("brokerId=5") == 1  # stats config shows the file as loaded
    assert "broker_id 5" in stats.splitlines()


@pytest.mark.parametrize(("system", "says"), [
    ("serverPort=0\n", "[system] brokerId: brokerId is not set"),
    ("brokerId=\nserverPort=0\n", "[system] brokerId=: Blank value for brokerId (line 2)"),
])
def test_broker_id_absent_or_blank_is_refused_naming_which(tmp_path, zk_connect, system, says):
    ini = tmp_path / "server.ini"
    ini.write_text(f"[system]\n{system}\n[topic=orders]\n")
    done = subprocess.run(
        [sys.executable, "-m", "metaq_fast.cli", "-f", str(ini), "--zk-connect", zk_connect,
         "--data-path", str(tmp_path / "data")],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "maxTransferSize" not in done.stderr and "Traceback" not in done.stderr
