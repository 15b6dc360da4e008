"""``metaq-bench`` as a user runs it: the installed entry point in a subprocess, against a local
cluster it starts itself (real ZooKeeper and broker processes) and against the test session's
ZooKeeper with brokers from the ``brokers`` fixture (``--zk``). A few thousand messages each;
the whole module takes well under a minute.

Checked: exit codes, the JSON document's fields, that the plot is a PNG, the verification counts,
``--compare`` output, that a deliberately wrong delivery (``--inject-fault``: the first consumer
drops, repeats or damages records before verifying them) fails the run with exit code 1, and
that nothing the tool started outlives it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metaq_fast.errors import ZooKeeperError
from metaq_fast.zk.server import find_zookeeper

from tests.helpers import skip_or_fail

pytestmark = pytest.mark.zk

BENCH = Path(sys.executable).parent / "metaq-bench"
TIMEOUT_S = 120


@pytest.fixture(scope="module", autouse=True)
def needs_zookeeper():
    if not BENCH.exists():
        skip_or_fail(f"{BENCH} is not installed (run ./scripts/install.sh)")
    try:
        find_zookeeper()
    except ZooKeeperError as exc:
        skip_or_fail(str(exc))


def bench(*args, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BENCH), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S, start_new_session=True)
    print(proc.stdout, proc.stderr, sep="\n")  # shown when a test fails
    return proc


def own_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (a temp dir of this test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_e2e_local_table_json_plot_and_compare(tmp_path):
    data = tmp_path / "cluster"
    first = bench("e2e", "--local", "--messages", 4000, "--batch-size", 500, "--producers", 2,
                  "--json", tmp_path / "a.json", "--plot", tmp_path / "a.png", "--data-dir", data,
                  cwd=tmp_path)
    assert first.returncode == 0
    for text in ("msg/s", "MB/s", "p50", "p90", "p99", "p999", "max", "verify: OK"):
        assert text in first.stdout
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["tool"] == "metaq-bench" and doc["scenario"] == "e2e"
    assert doc["machine"]["cpu_count"] == os.cpu_count() and doc["machine"]["python"]
    assert doc["config"]["messages"] == 4000 and doc["config"]["producers"] == 2
    assert doc["cluster"]["brokers"] == 1 and "unflushThreshold" in doc["cluster"]
    for phase in ("produce", "consume"):
        r = doc["results"][phase]
        assert r["messages"] == 4000 and r["msgs_per_s"] > 0 and r["mb_per_s"] > 0
    latency = doc["latency_ms"]["end_to_end"]
    assert latency["count"] == 4000
    assert 0 <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p999"] <= latency["max"]
    v = doc["verification"]
    assert v["ok"] and (v["acked"], v["unique"], v["delivered"]) == (4000, 4000, 4000)
    assert (v["missing"], v["duplicates"], v["corrupt"], v["failed"]) == (0, 0, 0, 0)
    run = doc["runs"][0]
    assert sum(run["per_second"]["produce"]) == 4000 and sum(run["per_second"]["consume"]) == 4000
    assert sum(run["samples"]["consume"]["counts"]) == 4000
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not own_processes(str(data)), "the local cluster outlived metaq-bench"
    assert not list(data.iterdir()), "the local cluster's files were left behind"

    second = bench("metaq-put", "--local", "--messages", 3000, "--set", "unflushThreshold=0",
                   "--json", tmp_path / "b.json", "--data-dir", data, cwd=tmp_path)
    assert second.returncode == 0
    doc_b = json.loads((tmp_path / "b.json").read_text())
    assert doc_b["cluster"]["unflushThreshold"] == 0
    assert doc_b["verification"]["unique"] == 3000 and doc_b["verification"]["ok"]

    compared = bench("--compare", tmp_path / "a.json", tmp_path / "b.json", cwd=tmp_path)
    assert compared.returncode == 0
    assert "B/A" in compared.stdout and "unflushThreshold: 1000 -> 0" in compared.stdout
    assert any(line.startswith("produce msg/s") and line.rstrip().endswith(("better", "worse", "same"))
               for line in compared.stdout.splitlines())
    assert not own_processes(str(data))


@pytest.mark.parametrize("fault, field, count", [("corrupt:3", "corrupt", 3), ("dup:4", "duplicates", 4)])
def test_a_wrong_delivery_fails_the_run(tmp_path, fault, field, count):
    proc = bench("e2e", "--local", "--messages", 2000, "--inject-fault", fault, "--idle-timeout", 1,
                 "--json", tmp_path / "r.json", "--data-dir", tmp_path, cwd=tmp_path)
    assert proc.returncode == 1
    assert "verify: FAILED" in proc.stdout
    v = json.loads((tmp_path / "r.json").read_text())["verification"]
    assert not v["ok"] and v[field] == count
    if field == "corrupt":  # a damaged message was not received intact: it is missing too
        assert v["missing"] == count and v["unique"] == 2000 - count


def test_against_a_running_cluster(tmp_path, brokers, zk_connect):
    broker = brokers(zk_connect=zk_connect, topics={"bench": {"numPartitions": 3}})
    for scenario in ("produce", "consume"):  # the second run starts after the first's messages
        proc = bench(scenario, "--zk", zk_connect, "--messages", 3000, "--consumers", 2,
                     "--json", tmp_path / f"{scenario}.json", cwd=tmp_path)
        assert proc.returncode == 0
        v = json.loads((tmp_path / f"{scenario}.json").read_text())["verification"]
        assert v["ok"] and v["unique"] == 3000 and v["foreign"] == 0
    assert broker.alive()
    missing_topic = bench("e2e", "--zk", zk_connect, "--topic", "nope", "--messages", 10, cwd=tmp_path)
    assert missing_topic.returncode == 3 and "no broker publishes topic 'nope'" in missing_topic.stderr


def test_bad_arguments(tmp_path):
    proc = bench("e2e", "--messages", 10, cwd=tmp_path)
    assert proc.returncode == 2 and "--zk CONNECT" in proc.stderr
    proc = bench("e2e", "--local", "--size", 10, cwd=tmp_path)
    assert proc.returncode == 2 and "at least 28" in proc.stderr
    proc = bench("e2e", "--local", "--set", "noSuchKey=1", "--data-dir", tmp_path, cwd=tmp_path)
    assert proc.returncode == 2 and "noSuchKey" in proc.stderr
