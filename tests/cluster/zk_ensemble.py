"""A 3-node ZooKeeper ensemble on test hosts: Debian's zookeeper, one server per host.

Each member is a ``LocalZooKeeper`` (its zoo.cfg, data dir and command) that runs
``QuorumPeerMain`` with the ensemble's ``server.N=<address>:2888:3888`` lines and a ``myid``
file, started inside its host's namespace. Readiness and roles are read with four-letter words
from inside a namespace (``Host.call``): the test process cannot reach the hosts' addresses
itself. ``connect_string("/metaq")`` is what brokers and clients are given:
``198.18.0.1:2181,198.18.0.2:2181,198.18.0.3:2181/metaq``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from metaq_fast.errors import ZooKeeperError
from metaq_fast.pdeath import die_with_parent
from metaq_fast.zk.server import LocalZooKeeper, find_zookeeper, four_letter_word

from tests.cluster.netns import Host

QUORUM_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
CLIENT_PORT = 2181
QUORUM_PORT = 2888
ELECTION_PORT = 3888


class EnsembleMember(LocalZooKeeper):
    main_class = QUORUM_MAIN

    def __init__(self, host: Host, my_id: int, servers: list[tuple[int, str]], data_dir: Path):
        super().__init__(data_dir, port=CLIENT_PORT, host=host.address, test_mode=True)
        self.node = host
        self.my_id = my_id
        self.servers = servers
        self._log = None

    def config_text(self) -> str:
        lines = [
            "# a member of the tests' ensemble: sync within 5 ticks, rejoin within 10",
            "initLimit=10",
            "syncLimit=5",
            "standaloneEnabled=false",
            "reconfigEnabled=false",
        ]
        lines += [f"server.{i}={address}:{QUORUM_PORT}:{ELECTION_PORT}"
                  for i, address in self.servers]
        return super().config_text() + "\n".join(lines) + "\n"

    def launch(self) -> None:
        """Start the server process in its host (returns at once: a member serves only once
        a quorum has formed)."""
        java_path, classpath = find_zookeeper()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.zk_data_path.mkdir(exist_ok=True)
        (self.zk_data_path / "myid").write_text(f"{self.my_id}\n")
        self.config_path.write_text(self.config_text())
        with open(self.log_path, "ab") as log:
            self._proc = self.node.popen(
                self.command(java_path, classpath), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.data_dir, start_new_session=True,
                preexec_fn=die_with_parent)

    def srvr(self, timeout_s: float = 1.0) -> str | None:
        return self.node.call(four_letter_word, self.host, self.port, "srvr", timeout_s)

    def mode(self) -> str | None:
        """``leader``, ``follower``, or None when it does not serve (no quorum, down)."""
        answer = self.srvr()
        for line in (answer or "").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)


class Ensemble:
    def __init__(self, hosts: list[Host], directory: Path):
        servers = [(i + 1, h.address) for i, h in enumerate(hosts)]
        self.members = [EnsembleMember(h, i + 1, servers, Path(directory) / f"zk{i + 1}")
                        for i, h in enumerate(hosts)]

    def connect_string(self, chroot: str = "") -> str:
        return ",".join(f"{m.host}:{m.port}" for m in self.members) + chroot

    def start(self, timeout_s: float = 60.0) -> "Ensemble":
        for member in self.members:
            member.launch()
        self.wait_serving(self.members, timeout_s)
        return self

    def wait_serving(self, members, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(members)
        while waiting:
            waiting = [m for m in waiting if m.mode() is None]
            if not waiting:
                return
            for m in waiting:
                if m._proc is not None and m._proc.poll() is not None:
                    raise ZooKeeperError(f"ZooKeeper {m.my_id} exited with {m._proc.returncode}:\n"
                                         f"{m.log_tail()}")
            if time.monotonic() > deadline:
                raise ZooKeeperError(f"ZooKeeper {[m.my_id for m in waiting]} not serving in "
                                     f"{timeout_s} s:\n" + "\n".join(m.log_tail(20) for m in waiting))
            time.sleep(0.2)

    def leader(self) -> EnsembleMember | None:
        for member in self.members:
            if member.is_running() and member.mode() == "leader":
                return member
        return None

    def stop(self) -> None:
        for member in self.members:
            try:
                member.stop()
            except Exception:  # noqa: BLE001 - stop the others all the same
                member.kill()
