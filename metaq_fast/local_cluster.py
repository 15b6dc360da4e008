"""``metaq-server -f server.ini --local --brokers N [--slaves M]``: one ZooKeeper, N brokers
and M slaves of each on this machine, in the foreground, to watch round robin, failover,
rebalancing (issue 13) and replication with takeover (issue 14).

Imports: stdlib, metaq_fast.errors / limits / pdeath, zk.server (``zookeeper_answers``), and
broker.server for local mode's two rules (``load``: the command line's overrides;
``start_local_zookeeper``: start a ZooKeeper on zk.zkConnect or use the one answering there),
so a cluster and a single ``--local`` broker read the same file the same way. No client code.

Brokers i = 0..N-1 are ``brokerId + i`` on ``serverPort + i`` (a port of 0 stays 0: a free
port each), and their dashboards on ``dashboardHttpPort + i`` (-1 stays off; when those ports
would overlap the protocol ports, every dashboard takes a free port). Slave j of broker i
(``--slave-id j``, files in ``broker-<id>-s<j>/``) follows on the next ports, after all the
brokers'. Files, beside dataPath
rather than inside it: a single broker started later on dataPath would take a directory named
``broker-1`` there for partition 1 of a topic ``broker``::

    <dataPath>/../zookeeper/               the ZooKeeper's, as for a single --local broker
    <dataPath>/../broker-<id>/data/        broker <id>'s dataPath
    <dataPath>/../broker-<id>/broker.log   its output and log (appended to)
    <dataPath>/../broker-<id>/ready.json   its ready file, while it serves

Each broker is ``python -m metaq_fast.cli -f <the same server.ini> --broker-id .. --port ..
--data-path .. --ready-file ..`` in a session of its own, so Ctrl-C in the terminal reaches
only this launcher, and with a parent-death signal, so a launcher killed by SIGKILL leaves no
broker behind (the ZooKeeper has one too).

Lifecycle: refuse (exit 2, one message: range, ports, ids, data paths) -> ZooKeeper -> brokers
-> wait for every ready file (a broker that dies meanwhile stops everything: exit 1) -> print
the summary -> watch: a broker that exits is reported with its exit status and log tail, the
others keep running -> SIGINT, SIGTERM or SIGHUP -> SIGTERM to every broker, wait for them (they
leave ZooKeeper, pause zk.zkSyncTimeMs, flush), SIGKILL the process group of any still there ->
stop the ZooKeeper if this launcher started it -> exit 0. A second signal while stopping kills
what is left at once.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import limits
from .errors import ZooKeeperError
from .pdeath import die_with_parent
from .zk.server import zookeeper_answers

BROKERS_MAX = 32
SLAVES_MAX = 4
PORT_MAX = 65535
READY_POLL_INTERVAL_S = 0.05
WATCH_POLL_INTERVAL_S = 0.2
START_MARGIN_S = 30.0  # beyond workerStartTimeoutMs and the ZooKeeper connection timeout
STOP_MARGIN_S = 30.0  # beyond zk.zkSyncTimeMs: unregister, pause, flush the workers, exit
GROUP_EXIT_TIMEOUT_S = 10.0  # a supervisor's workers follow it (parent-death signal)
LOG_TAIL_LINES = 8
DEMO_GROUP = "demo"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StartFailed(Exception):
    """A broker died or did not get ready while the cluster started."""


def shown(path: Path | str) -> str:
    """``path`` relative to the working directory when it is below it, else absolute."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def exit_text(code: int) -> str:
    """A Popen returncode in words (negative: the signal that ended it)."""
    names = {sig.value: sig.name for sig in signal.Signals}
    return f"exit code {code}" if code >= 0 else f"killed by {names.get(-code, f'signal {-code}')}"


def port_is_free(host: str, port: int) -> bool:
    """Can a server bind ``host:port`` now? SO_REUSEADDR as the broker sets it, so sockets in
    TIME_WAIT from an earlier run do not count as taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def zookeeper_address(connect: str) -> tuple[str, int] | None:
    """(host, port) of the first server of a connect string; None when it has no port."""
    first = connect.split(",")[0].split("/")[0]
    host, _, port = first.rpartition(":")
    if not port.isdigit():
        return None
    return ("127.0.0.1" if host in ("", "localhost") else host), int(port)


class Broker:
    """One broker of the cluster: where it lives and, once started, its process."""

    def __init__(self, broker_id: int, port: int, dashboard_port: int, directory: Path,
                 slave_id: int | None = None):
        self.broker_id = broker_id
        self.slave_id = slave_id
        self.port = port  # as asked; the ready file says which one a 0 became
        self.dashboard_port = dashboard_port
        self.directory = directory
        self.data_path = directory / "data"
        self.log_path = directory / "broker.log"
        self.ready_path = directory / "ready.json"
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}  # its ready file
        self.reported = False  # its exit was printed

    def command(self, config_path: Path, zk_connect: str, args) -> list[str]:
        command = [sys.executable, "-m", "metaq_fast.cli", "-f", str(config_path),
                   "--zk-connect", zk_connect, "--broker-id", str(self.broker_id),
                   "--port", str(self.port), "--dashboard-port", str(self.dashboard_port),
                   "--data-path", str(self.data_path), "--log-file", str(self.log_path),
                   "--ready-file", str(self.ready_path)]
        if args.workers is not None:
            command += ["--workers", str(args.workers)]
        if self.slave_id is not None:
            command += ["--slave-id", str(self.slave_id)]
        if args.log_level is not None:
            command += ["--log-level", args.log_level]
        return command

    def start(self, command: list[str]) -> None:
        self.data_path.mkdir(parents=True, exist_ok=True)
        self.ready_path.unlink(missing_ok=True)  # left by a broker killed with SIGKILL
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
                preexec_fn=functools.partial(die_with_parent, os.getpid()))

    @property
    def name(self) -> str:
        return f"{self.broker_id}" + ("" if self.slave_id is None else f" slave {self.slave_id}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def plan_brokers(config, count: int, slaves: int = 0) -> list[Broker]:
    """The brokers, then each broker's slaves (module docstring)."""
    base = Path(config.data_path).resolve().parent
    total = count * (1 + slaves)
    ports = [config.server_port + i if config.server_port else 0 for i in range(total)]
    dashboard = config.dashboard_http_port
    if dashboard <= 0:
        dashboards = [dashboard] * total  # -1 off, 0 a free port for each
    else:
        dashboards = [dashboard + i for i in range(total)]
        if set(dashboards) & set(ports) or dashboards[-1] > PORT_MAX:
            dashboards = [0] * total
    planned = [Broker(config.broker_id + i, ports[i], dashboards[i],
                      base / f"broker-{config.broker_id + i}") for i in range(count)]
    for i in range(count):
        for j in range(slaves):
            k = count + i * slaves + j
            planned.append(Broker(config.broker_id + i, ports[k], dashboards[k],
                                  base / f"broker-{config.broker_id + i}-s{j}", slave_id=j))
    return planned


def refusal(config, args, count: int, slaves: int = 0) -> str | None:
    """Why this cluster cannot start (one message), or None."""
    if not 1 <= count <= BROKERS_MAX:
        return f"--brokers must be 1..{BROKERS_MAX}, got {count}"
    if not 0 <= slaves <= SLAVES_MAX:
        return f"--slaves must be 0..{SLAVES_MAX}, got {slaves}"
    if not args.local:
        return "--brokers N needs --local (the cluster starts with a ZooKeeper of its own)"
    if not config.zk.enabled:
        return "--brokers N needs ZooKeeper: zk.zkEnable=true and no --no-zk"
    if args.log_file is not None:
        return "--log-file does not go with --brokers: each broker logs to a file of its own"
    if config.broker_id + count - 1 > limits.BROKER_ID_MAX:
        return (f"broker ids {config.broker_id}..{config.broker_id + count - 1} go past "
                f"{limits.BROKER_ID_MAX}")
    last_port = config.server_port + count * (1 + slaves) - 1
    if last_port > PORT_MAX:
        return f"ports {config.server_port}..{last_port} go past {PORT_MAX}"
    shared = sorted(name for name, topic in config.topic_configs.items()
                    if "data_path" in topic.explicit_keys)
    if shared:
        return (f"{config.path}: [topic={shared[0]}] sets its own dataPath, which every broker "
                "of the cluster would share; remove it to run --brokers")
    address = zookeeper_address(config.zk.connect)
    if address is None or not address[0].startswith("127."):
        return (f"zk.zkConnect={config.zk.connect}: local mode needs a loopback address such as "
                "127.0.0.1:2181")
    if not port_is_free(*address) and not zookeeper_answers(*address):
        return (f"port {address[1]} on {address[0]} (zk.zkConnect) is taken by something that "
                "is not a ZooKeeper")
    for broker in plan_brokers(config, count, slaves):
        for host, port, what in ((config.listen_host, broker.port, "port"),
                                 (config.dashboard_host, broker.dashboard_port, "dashboard port")):
            if port > 0 and not port_is_free(host, port):
                return (f"port {port} on {host} (broker {broker.broker_id}'s {what}) is taken; "
                        "stop what uses it, or give --port / --dashboard-port another base")
    return None


def demo_topic(config) -> str:
    """The configured topic with the most partitions (the first of them): the one to try."""
    topics = [t for t in config.topic_configs.values() if t.is_valid_name and not t.is_pattern]
    if not topics:
        return "test"
    return max(topics, key=lambda t: t.num_partitions).name


def console_script(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return shown(beside)
    return f"{shown(sys.executable)} -m metaq_fast.cli{' admin' if name == 'metaq-admin' else ''}"


def commands_to_try(config, victim: Broker, slaves: int = 0) -> list[tuple[str, str]]:
    zk, root, topic = config.zk.connect, config.zk.root, demo_topic(config)
    admin = f"{console_script('metaq-admin')} -z {zk}" + (f" --zk-root {root}" if root != "/meta" else "")
    bench = f"{console_script('metaq-bench')} e2e --zk {zk}" + (f" --zk-root {root}" if root != "/meta" else "")
    python = shown(sys.executable)
    client = f'"{zk}"' + (f', zk_root="{root}"' if root != "/meta" else "")
    produce = (f"{python} -c 'from metaq_fast.client.producer import Producer; p = Producer({client}); "
               f"print([str(p.send_sync(\"{topic}\", b\"hello\").partition) for _ in range(12)]); "
               "p.close()'")
    consume = (f"{python} -c 'from metaq_fast.client.consumer import Consumer; c = Consumer("
               f"{client}, group=\"{DEMO_GROUP}\", topics=[\"{topic}\"]); "
               "[print(r.partition, r.offset, r.value) for r in c]'")
    commands = [
        (f"{admin} brokers", "the brokers registered in ZooKeeper"),
        (f"{admin} topics", "each topic's brokers and partitions"),
        (produce, "12 messages: round robin over every broker's partitions"),
        (consume, f"a consumer of group {DEMO_GROUP}; start a second one: the group splits the "
                  "partitions"),
        (f"{admin} group {DEMO_GROUP}", "who owns which partition, and the lag"),
        (f"{bench} --topic {topic} --duration 30", "a load across the brokers"),
    ]
    if slaves:
        commands += [
            (f"{admin} replication", "each broker id's master and slaves, epoch, in-sync set, lag"),
            (f"kill {victim.pid}", f"stop broker {victim.broker_id}'s master: its slave takes "
                                   "over (epoch + 1), producers and consumers follow it"),
        ]
    else:
        commands.append((f"kill {victim.pid}", f"stop broker {victim.broker_id}: producers move "
                                               "to the others, the group rebalances"))
    return commands


class LocalClusterRun:
    """The launcher: start, watch, stop (module docstring)."""

    def __init__(self, config, args, brokers: list[Broker]):
        self.config = config
        self.args = args
        self.brokers = brokers
        self.zookeeper = None  # the LocalZooKeeper started here; None when one was answering
        self.stop_signal: int | None = None
        self.hurry = False  # a second signal while stopping: kill what is left

    def on_signal(self, signum, _frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        else:
            self.hurry = True

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self.on_signal) for sig in STOP_SIGNALS}
        try:
            try:
                self.start()
            except (StartFailed, ZooKeeperError) as exc:
                print(f"metaq-server: {exc}", file=sys.stderr, flush=True)
                return 1
            if self.stop_signal is None:
                self.write_ready_file()
                self.print_summary()
                self.watch()
            return 0
        finally:
            started = self.zookeeper is not None or any(b.proc for b in self.brokers)
            self.stop()
            if started:
                print("local cluster stopped", flush=True)
            if self.args.ready_file is not None:
                self.args.ready_file.unlink(missing_ok=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ---- start ----------------------------------------------------------------------------

    def start(self) -> None:
        from .broker.server import start_local_zookeeper
        self.zookeeper = start_local_zookeeper(self.config)
        if self.zookeeper is not None:
            print(f"started ZooKeeper on {self.config.zk.connect} (pid {self.zookeeper.pid}, "
                  f"log {shown(self.zookeeper.log_path)})", flush=True)
        else:
            print(f"using the ZooKeeper that answers on {self.config.zk.connect} (left running "
                  "at the end)", flush=True)
        for broker in self.brokers:
            if self.stop_signal is not None:
                return
            broker.start(broker.command(Path(self.config.path).resolve(), self.config.zk.connect,
                                        self.args))
        print(f"starting {len(self.brokers)} brokers (logs in {shown(self.brokers[0].directory.parent)}"
              "/broker-<id>[-s<slave>]/broker.log)...", flush=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        timeout_s = (self.config.worker_start_timeout_ms + self.config.zk.connection_timeout_ms) / 1000
        deadline = time.monotonic() + timeout_s + START_MARGIN_S
        pending = list(self.brokers)
        while pending and self.stop_signal is None:
            for broker in list(pending):
                if broker.ready_path.exists():
                    broker.info = json.loads(broker.ready_path.read_text())
                    pending.remove(broker)
                elif not broker.running():
                    broker.reported = True
                    raise StartFailed(
                        f"broker {broker.broker_id} (pid {broker.pid}) stopped while starting, "
                        f"{exit_text(broker.proc.returncode)}; the end of {shown(broker.log_path)}:"
                        f"\n{broker.log_tail()}")
            if pending and time.monotonic() > deadline:
                raise StartFailed(f"broker {pending[0].broker_id} was not serving after "
                                  f"{timeout_s + START_MARGIN_S:g} s; the end of "
                                  f"{shown(pending[0].log_path)}:\n{pending[0].log_tail()}")
            time.sleep(READY_POLL_INTERVAL_S)

    def write_ready_file(self) -> None:
        """The launcher's --ready-file: every pid and address, for scripts and tests."""
        if self.args.ready_file is None:
            return
        zookeeper = {"connect": self.config.zk.connect, "started": self.zookeeper is not None,
                     "pid": self.zookeeper.pid if self.zookeeper is not None else None}
        brokers = [dict(b.info, log=str(b.log_path), data_path=str(b.data_path))
                   for b in self.brokers]
        info = {"pid": os.getpid(), "zookeeper": zookeeper, "brokers": brokers}
        path = Path(self.args.ready_file)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, path)

    def print_summary(self) -> None:
        masters = [b for b in self.brokers if b.slave_id is None]
        slaves = len(self.brokers) // len(masters) - 1
        lines = ["", f"local cluster: {len(masters)} brokers"
                 f"{f' with {slaves} slave(s) each' if slaves else ''}, ZooKeeper "
                 f"{self.config.zk.connect}"
                 f"{' (root ' + self.config.zk.root + ')' if self.config.zk.root != '/meta' else ''}",
                 "", f"  {'broker':<10} {'url':<26} {'pid':<8} {'dashboard':<8}  log"]
        for b in self.brokers:
            dashboard = b.info.get("dashboard_port") or "-"
            lines.append(f"  {b.name:<10} {b.info.get('url', '?'):<26} {b.pid:<8} "
                         f"{dashboard:<8}  {shown(b.log_path)}")
        lines += ["", "Try, in another terminal:"]
        victim = masters[0] if slaves else masters[-1]
        for command, what in commands_to_try(self.config, victim, slaves):
            lines += [f"  {command}", f"      # {what}"]
        lines += ["", "Ctrl-C stops the brokers and the ZooKeeper started here.", ""]
        print("\n".join(lines), flush=True)

    # ---- watch and stop -------------------------------------------------------------------

    def watch(self) -> None:
        while self.stop_signal is None:
            for broker in self.brokers:
                if not broker.reported and not broker.running():
                    broker.reported = True
                    left = sum(b.running() for b in self.brokers)
                    print(f"broker {broker.name} (pid {broker.pid}) exited, "
                          f"{exit_text(broker.proc.returncode)}; the end of "
                          f"{shown(broker.log_path)}:\n{broker.log_tail()}\n"
                          f"{left} of {len(self.brokers)} brokers still running; Ctrl-C stops "
                          "everything", flush=True)
            time.sleep(WATCH_POLL_INTERVAL_S)

    def stop(self) -> None:
        live = [b for b in self.brokers if b.running()]
        if live:
            print(f"stopping {len(live)} broker(s): each leaves ZooKeeper, serves "
                  f"{self.config.zk.sync_time_ms} ms more, flushes, exits...", flush=True)
        for broker in live:
            try:
                broker.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.config.zk.sync_time_ms / 1000 + STOP_MARGIN_S
        while any(b.running() for b in live) and time.monotonic() < deadline and not self.hurry:
            time.sleep(0.1)
        for broker in self.brokers:
            if broker.proc is None:
                continue
            if broker.running():
                print(f"broker {broker.broker_id} (pid {broker.pid}) is still running: SIGKILL",
                      flush=True)
                kill_group(broker.pid)
            broker.proc.wait()
            reap_group(broker.pid, time.monotonic() + GROUP_EXIT_TIMEOUT_S)
            broker.ready_path.unlink(missing_ok=True)
        if self.zookeeper is not None:
            print(f"stopping ZooKeeper (pid {self.zookeeper.pid})", flush=True)
            self.zookeeper.stop()
            self.zookeeper = None


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group (0: only look); False when the group is empty."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def kill_group(pgid: int) -> None:
    signal_group(pgid, signal.SIGKILL)


def reap_group(pgid: int, deadline: float) -> None:
    """Wait until the process group of an exited broker (its workers) is empty; SIGKILL it at
    ``deadline``."""
    while signal_group(pgid, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_group(pgid)


def run_local_cluster(args) -> int:
    """``metaq-server --local --brokers N``; returns the exit code (2: refused)."""
    from .broker.server import load
    config = load(args)
    count = args.brokers if args.brokers is not None else 1
    slaves = args.slaves or 0
    problem = refusal(config, args, count, slaves)
    if problem is not None:
        print(f"metaq-server: {problem}", file=sys.stderr)
        return 2
    return LocalClusterRun(config, args, plan_brokers(config, count, slaves)).run()
