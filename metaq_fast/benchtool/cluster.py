"""A throw-away local cluster for ``metaq-bench --local``: one ZooKeeper and N brokers, each with
``--slaves`` slaves (replication: issue 14).

Imports: stdlib, metaq_fast.config / errors, zk.server (LocalZooKeeper), zk.cluster (to wait
until the topic is published). No client code.

Everything lives in one temporary directory (``--data-dir`` chooses its parent, so the disk under
test is the one you name): ``zookeeper/``, and per broker ``broker-<i>/server.ini`` (the user's
file with overrides applied), ``data/``, ``broker.log`` and ``ready.json``. ``start`` starts
ZooKeeper (test mode: no fsync, on a free loopback port), then every broker
(``python -m metaq_fast.cli -f server.ini --ready-file ...``, in its own session, with a parent
death signal so a killed bench never leaves a broker behind), and waits until ZooKeeper lists
every partition of the bench topic. Slaves (``broker-<i>-s<n>/``, the same ini with
``--slave-id n``) start after the brokers; ``wait_published`` then also waits until every
broker id's in-sync set holds all of them. ``stop`` sends SIGTERM to every broker at once, waits, kills
the process group of any that did not exit, stops ZooKeeper and deletes the directory (unless
``keep``). Both are safe to call after a partial start or twice.

The ini is rewritten line by line (comments and order kept): an overridden key replaces every
line that sets it in its section, or is appended to the section (created if missing).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..config import load_config
from ..errors import ConfigError
from ..pdeath import die_with_parent

BROKER_START_TIMEOUT_S = 60.0
BROKER_STOP_TIMEOUT_S = 30.0
TOPIC_KEYS = frozenset({"numPartitions", "unflushThreshold", "unflushInterval", "deletePolicy",
                        "deleteWhen", "dataPath", "acceptPublish", "acceptSubscribe", "stat"})

DEFAULT_INI = """\
; metaq-bench's built-in broker configuration (used when --config is not given)
[system]
brokerId=0
numPartitions=1
serverPort=8123
dashboardHttpPort=-1
unflushThreshold=1000
unflushInterval=10000
maxSegmentSize=1073741824
maxTransferSize=1048576
workerCount=0
logLevel=WARNING
[zookeeper]
zk.zkConnect=127.0.0.1:2181
"""


def rewrite_ini(text: str, overrides: dict[str, dict[str, str]]) -> str:
    """``text`` with ``overrides`` (section name -> {key: value}) applied; see the module
    docstring. Section names are as written between brackets (``system``, ``topic=bench``)."""
    lines = text.splitlines()
    section_of: list[str | None] = []
    last_line: dict[str | None, int] = {}  # section -> its header or last key line
    current = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            last_line[current] = i
        elif stripped and stripped[:1] not in (";", "#"):
            last_line[current] = i
        section_of.append(current)
    out: list[str] = []
    pending = {name: dict(values) for name, values in overrides.items()}
    for i, line in enumerate(lines):
        section = section_of[i]
        stripped = line.strip()
        key = stripped.partition("=")[0].strip()
        if (section in overrides and "=" in stripped and stripped[:1] not in (";", "#")
                and not stripped.startswith("[") and key in overrides[section]):
            if key in pending.get(section, {}):
                out.append(f"{key}={pending[section].pop(key)}")
            # else: a repeated line of an overridden key, dropped
        else:
            out.append(line)
        if last_line.get(section) == i and pending.get(section):
            out.extend(f"{k}={v}" for k, v in pending.pop(section).items())
    for name, values in pending.items():
        if values:
            out.append(f"[{name}]")
            out.extend(f"{k}={v}" for k, v in values.items())
    return "\n".join(out) + "\n"


def parse_settings(items) -> dict[str, str]:
    """``["unflushThreshold=0", ...]`` -> dict; raises ValueError on a malformed item."""
    settings = {}
    for item in items or ():
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        settings[key.strip()] = value.strip()
    return settings


class LocalCluster:
    """ZooKeeper + ``brokers`` brokers from one server.ini with overrides (module docstring)."""

    def __init__(self, *, config: Path | None, brokers: int = 1, topic: str, partitions: int | None,
                 workers: int | None = None, settings: dict[str, str] | None = None,
                 data_dir: Path | None = None, keep: bool = False, log=None, slaves: int = 0):
        if brokers < 1:
            raise ValueError("--brokers must be at least 1")
        if not 0 <= slaves <= 8:
            raise ValueError("--slaves must be 0..8")
        self.slaves = slaves
        self.slave_infos: list[dict] = []
        self.names: list[str] = []  # the directory of each process in ``procs``
        self.config_path = config
        self.base_text = Path(config).read_text(errors="replace") if config else DEFAULT_INI
        self.brokers = brokers
        self.topic = topic
        self.partitions = partitions
        self.workers = workers
        self.settings = dict(settings or {})
        self.data_dir = data_dir
        self.keep = keep
        self.log = log or (lambda text: None)
        self.directory: Path | None = None
        self.zookeeper = None
        self.procs: list[subprocess.Popen] = []
        self.infos: list[dict] = []
        self.configs: list = []

    # ---- configuration ------------------------------------------------------------------------

    def overrides(self, broker_id: int, broker_dir: Path, zk_connect: str) -> dict[str, dict[str, str]]:
        system = {"brokerId": str(broker_id), "serverPort": "0", "dashboardHttpPort": "-1",
                  "hostName": "127.0.0.1", "listenHost": "", "dataPath": str(broker_dir / "data"),
                  "dataLogPath": str(broker_dir / "data"), "logFile": ""}
        zookeeper = {"zk.zkEnable": "true", "zk.zkConnect": zk_connect, "zk.zkSyncTimeMs": "100"}
        topic: dict[str, str] = {}
        if self.workers is not None:
            system["workerCount"] = str(self.workers)
        for key, value in self.settings.items():
            if key.startswith("zk."):
                zookeeper[key] = value
            else:
                system[key] = value
                if key in TOPIC_KEYS:
                    topic[key] = value  # a value in the topic's own section would win otherwise
        topic.pop("dataPath", None)
        if self.partitions is not None:
            topic["numPartitions"] = str(self.partitions)
        elif f"[topic={self.topic}]" not in self.base_text.replace(" ", ""):
            topic["numPartitions"] = "2"
        return {"system": system, "zookeeper": zookeeper, f"topic={self.topic}": topic}

    def write_config(self, broker_id: int, zk_connect: str, name: str | None = None) -> Path:
        broker_dir = self.directory / (name or f"broker-{broker_id}")
        broker_dir.mkdir(parents=True, exist_ok=True)
        ini = broker_dir / "server.ini"
        ini.write_text(rewrite_ini(self.base_text, self.overrides(broker_id, broker_dir, zk_connect)))
        self.configs.append(load_config(ini))  # ConfigError names the key and the line
        return ini

    def check_config(self) -> None:
        """Load the rewritten configuration once, before anything is started."""
        directory = Path(tempfile.mkdtemp(prefix="metaq-bench-check-"))
        try:
            broker_dir = directory / "broker-0"
            broker_dir.mkdir()
            ini = broker_dir / "server.ini"
            ini.write_text(rewrite_ini(self.base_text, self.overrides(0, broker_dir, "127.0.0.1:2181")))
            config = load_config(ini)
            if config.topic_config(self.topic) is None:
                raise ConfigError(f"topic {self.topic!r} is not accepted by the configuration")
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def describe(self) -> dict:
        """The settings that matter for a benchmark, from the first broker's loaded config."""
        if not self.configs:
            return {}
        c = self.configs[0]
        t = c.topic_config(self.topic)
        return {"brokers": self.brokers, "slaves": self.slaves,
                "config_file": str(self.config_path or "(built-in)"),
                "settings": self.settings, "workerCount": c.worker_count or os.cpu_count(),
                "unflushThreshold": t.unflush_threshold, "unflushInterval": t.unflush_interval_ms,
                "maxSegmentSize": c.segment_bytes_max, "maxTransferSize": c.transfer_bytes_max,
                "numPartitions": t.num_partitions, "dataPath": str(self.directory)}

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> str:
        """Start everything; returns the ZooKeeper connect string."""
        from ..zk.server import LocalZooKeeper
        self.check_config()
        if self.data_dir is not None:
            Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="metaq-bench-", dir=self.data_dir))
        self.log(f"local cluster in {self.directory}")
        self.zookeeper = LocalZooKeeper(self.directory / "zookeeper", port=0, test_mode=True)
        self.zookeeper.start()
        connect = self.zookeeper.connect_string
        readies = [self._launch(broker_id, connect) for broker_id in range(self.brokers)]
        self._wait_ready(readies)
        slave_readies = [self._launch(b, connect, n) for b in range(self.brokers)
                         for n in range(self.slaves)]
        self._wait_ready(slave_readies, first=self.brokers)
        self.slave_infos, self.infos = self.infos[self.brokers:], self.infos[:self.brokers]
        self.log(f"ZooKeeper {connect} (pid {self.zookeeper.pid}), brokers "
                 + ", ".join(f"{i['url']} (pid {p.pid})" for i, p in zip(self.infos, self.procs))
                 + (f", {len(self.slave_infos)} slave(s)" if self.slave_infos else ""))
        return connect

    def _launch(self, broker_id: int, connect: str, slave_id: int | None = None) -> Path:
        name = f"broker-{broker_id}" + ("" if slave_id is None else f"-s{slave_id}")
        ini = self.write_config(broker_id, connect, name)
        broker_dir = ini.parent
        ready = broker_dir / "ready.json"
        self.names.append(name)
        extra = [] if slave_id is None else ["--slave-id", str(slave_id)]
        with open(broker_dir / "broker.log", "ab") as log_file:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "metaq_fast.cli", "-f", str(ini), "--ready-file", str(ready),
                 *extra],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
                preexec_fn=die_with_parent))
        return ready

    def _wait_ready(self, readies: list[Path], first: int = 0) -> None:
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        for broker_id, (proc, ready) in enumerate(zip(self.procs[first:], readies), first):
            while not ready.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"broker {broker_id} exited with {proc.returncode} while "
                                       f"starting:\n{self.log_tail(broker_id)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker {broker_id} not ready after "
                                       f"{BROKER_START_TIMEOUT_S:g} s:\n{self.log_tail(broker_id)}")
                time.sleep(0.02)
            self.infos.append(json.loads(ready.read_text()))

    def wait_published(self, zk_client, root: str, partitions_total: int, timeout_s: float = 30.0):
        """Wait until ZooKeeper lists ``partitions_total`` partitions of the topic."""
        from ..zk.cluster import ClusterView
        with ClusterView(zk_client, root) as view:
            deadline = time.monotonic() + timeout_s
            while True:
                found = view.publish_partitions(self.topic)
                if len(found) >= partitions_total and len(view.subscribe_partitions(self.topic)) >= partitions_total:
                    return found
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ZooKeeper lists {len(found)} of {partitions_total} partitions "
                                       f"of {self.topic} after {timeout_s:g} s")
                time.sleep(0.05)

    def wait_in_sync(self, zk_client, root: str, timeout_s: float = 60.0) -> None:
        """With slaves: until every broker id's in-sync set holds its master and every slave."""
        if not self.slaves:
            return
        from ..zk import paths
        from ..zk.replica_state import ReplicaState
        deadline = time.monotonic() + timeout_s
        for broker_id in range(self.brokers):
            path = paths.replication_state_path(paths.normalize_root(root), broker_id)
            while True:
                data = zk_client.exists(path) and zk_client.get(path)[0]
                if data and len(ReplicaState.parse(data).isr) == self.slaves + 1:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker {broker_id}'s slaves not in sync after "
                                       f"{timeout_s:g} s: {data!r}")
                time.sleep(0.1)

    def replica_lag(self) -> tuple[int, int]:
        """The masters' view of their slaves, from each master's ``stats replication``: (bytes
        the slaves lacked at their last fetch, summed; the most ms since a slave last held all
        its master had); (-1, -1) when a master does not answer."""
        from ..broker.http import query_stats
        total, worst = 0, 0
        for info in self.infos:
            try:
                reply = query_stats("127.0.0.1", info["port"], "replication", timeout_s=2.0)
            except (OSError, ValueError):
                return -1, -1
            for line in bytes(reply.body).decode(errors="replace").splitlines():
                if line.startswith("follower_"):
                    fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
                    total += int(fields.get("lag_bytes", 0))
                    worst = max(worst, int(fields.get("caught_up_ms_ago", 0)))
        return total, worst

    def partitions_total(self) -> int:
        return sum(c.topic_config(self.topic).num_partitions for c in self.configs[:self.brokers])

    def log_tail(self, index: int, lines: int = 30) -> str:
        """The end of the log of process ``index`` (brokers first, then slaves)."""
        name = self.names[index] if index < len(self.names) else f"broker-{index}"
        try:
            text = (self.directory / name / "broker.log").read_text(errors="replace")
        except (OSError, TypeError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        procs, self.procs = self.procs, []
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + BROKER_STOP_TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            # its workers follow the supervisor (parent death signal); make sure of it
            group_deadline = time.monotonic() + 10
            while time.monotonic() < group_deadline:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.zookeeper is not None:
            self.zookeeper.stop()
            self.zookeeper = None
        if self.directory is not None and not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
