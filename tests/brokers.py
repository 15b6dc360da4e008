"""Real ``metaq-server`` processes for tests, and a plain blocking wire client.

``BrokerProcess`` writes a server.ini into a temp dir, starts ``python -m metaq_fast.cli`` (port 0,
a ready file), waits until it serves, and stops it by PID (SIGTERM, then SIGKILL). Its log is
kept in the temp dir and shown when a test fails (see conftest). ``WireClient`` speaks the MetaQ
protocol over a blocking socket using the project's own codec.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from metaq_fast.pdeath import die_with_parent
from metaq_fast.protocol import NEED_DATA, ResponseDecoder

REPO = Path(__file__).resolve().parent.parent
STARTED: list["BrokerProcess"] = []


# every broker a test started, for cleanup and log dumps


def server_ini(*, broker_id=0, port=0, data_path: Path, workers=2, zk_connect: str | None = None,
               topics: dict | None = None, system: dict | None = None, zk: dict | None = None) -> str:
    lines = [
        "[system]",
        f"brokerId={broker_id}",
        "numPartitions=1",
        f"serverPort={port}",
        "unflushThreshold=0",
        "unflushInterval=10000",
        "maxSegmentSize=1073741824",
        "maxTransferSize=1048576",
        f"dataPath={data_path}",
        f"workerCount={workers}",
        "dashboardHttpPort=-1",
    ]
    for key, value in (system or {}).items():
        lines = [line for line in lines if not line.startswith(key + "=")]
        lines.append(f"{key}={value}")
    lines.append("[zookeeper]")
    if zk_connect:
        lines += [f"zk.zkConnect={zk_connect}", "zk.zkSessionTimeoutMs=4000",
                  "zk.zkConnectionTimeoutMs=10000", "zk.zkSyncTimeMs=100"]
    else:
        lines.append("zk.zkEnable=false")
    for key, value in (zk or {}).items():
        lines.append(f"{key}={value}")
    for name, settings in (topics if topics is not None else {"test": {"numPartitions": 2}}).items():
        lines.append(f"[topic={name}]")
        for key, value in settings.items():
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


class BrokerProcess:
    def __init__(self, directory: Path, host=None, args=(), **ini):
        self.host = host  # a tests.cluster.netns.Host to run in (None: this namespace)
        self.args = tuple(args)  # command-line arguments of every start (e.g. --slave-id 1)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_path = ini.pop("data_path", self.directory / "data")
        self.ini = ini
        self.config_path = self.directory / "server.ini"
        self.ready_path = self.directory / "ready.json"
        self.log_path = self.directory / "broker.log"
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    def write_config(self) -> None:
        self.config_path.write_text(server_ini(data_path=self.data_path, **self.ini))

    def start(self, timeout_s: float = 60.0, extra_args=()) -> "BrokerProcess":
        extra_args = (*self.args, *extra_args)
        self.write_config()
        try:
            self.ready_path.unlink()
        except FileNotFoundError:
            pass
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        argv = [sys.executable, "-m", "metaq_fast.cli", "-f", str(self.config_path),
                "--ready-file", str(self.ready_path), *extra_args]
        if self.host is not None:
            argv = self.host.command(argv)
        self.proc = subprocess.Popen(
            argv,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO, env=env,
            start_new_session=True, preexec_fn=die_with_parent)
        log.close()
        STARTED.append(self)
        deadline = time.monotonic() + timeout_s
        while not self.ready_path.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"metaq-server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()  # not left running until pytest exits
                raise AssertionError(f"metaq-server not ready in {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.02)
        self.info = json.loads(self.ready_path.read_text())
        return self

    @property
    def port(self) -> int:
        return self.info["port"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return self.info["url"]

    def worker_pids(self) -> dict[int, int]:
        """Current worker pids (from /proc: children of the supervisor)."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.pid and b"metaq_fast.cli" in cmdline:
                found[int(entry.name)] = int(entry.name)
        return found

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0, sig=signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap_workers()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the supervisor (its workers follow through their parent-death signal)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reap_workers()

    def _reap_workers(self) -> None:
        # Workers of this broker die with their supervisor; make sure none outlives a test.
        deadline = time.monotonic() + 10
        pgid = self.proc.pid
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class WireClient:
    """A blocking MetaQ connection for tests: ``request(bytes)`` returns the decoded reply."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = ResponseDecoder()
        self._replies: list = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, timeout_s: float = 10.0):
        deadline = time.monotonic() + timeout_s
        while not self._replies:
            reply = self.decoder.next_command()
            if reply is not NEED_DATA:
                self._replies.append(reply)
                break
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("broker closed the connection")
            self.decoder.feed(data)
        return self._replies.pop(0)

    def replies(self, count: int, timeout_s: float = 30.0) -> list:
        return [self.reply(timeout_s) for _ in range(count)]

    def request(self, data: bytes, timeout_s: float = 10.0):
        self.send(data)
        return self.reply(timeout_s)

    def closed_by_peer(self, timeout_s: float = 5.0) -> bool:
        """True once the broker closes the connection (reading only EOF)."""
        self.sock.settimeout(timeout_s)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()
