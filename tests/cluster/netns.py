"""Test hosts: network namespaces on one Linux bridge, and the faults a network has.

Each ``Host`` is a network namespace with one interface, ``eth0``, addressed from
198.18.0.0/24 (RFC 2544's range for network tests; used only inside these namespaces, never a
target elsewhere), plugged into a bridge that lives in a namespace of its own (the "switch"), so
the machine's own namespace gets no interface, address or route. Processes of a host run inside
its namespace (``Host.popen``: ``ip netns exec``, which execs, so the PID is the program's).
The test process itself stays outside; ``Host.call`` runs a function on a thread that has
entered the host's namespace (``setns``) for the few checks that need a socket there.

Faults, without netfilter or netem (this kernel has neither):

* ``link_down`` / ``link_up``: the host's interface (cut from everything, healed);
* ``cut(a, b)`` / ``heal(a, b)``: blackhole routes on both sides (packets vanish, as in a real
  partition: no refusal, the peer just stops answering);
* ``crash``: SIGKILL of every process in the namespace; ``pause`` / ``resume``: SIGSTOP/SIGCONT.

Names carry the PID of the test process (``mqt<pid>-<host>``); a ``Network`` deletes its
namespaces when closed (also when the test failed), and at creation deletes namespaces of
earlier test processes that died without doing so. Needs root and iproute2; ``available()``
says whether namespaces can be made here.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

SUBNET = "198.18.0"
PREFIX_LEN = 24
PREFIX = "mqt"
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
_NAME = re.compile(rf"^{PREFIX}(\d+)-")
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): "
                           f"{done.stderr.strip()}")
    return done


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a network namespace: {exc}"
    _ip("netns", "del", probe, check=False)
    return None


def namespace_pids(ns: str) -> list[int]:
    done = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def _delete_namespace(ns: str) -> None:
    """Kill what runs in ``ns`` (ours: only our tests start processes there), then delete it."""
    for _attempt in range(50):
        pids = namespace_pids(ns)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    _ip("netns", "del", ns, check=False)


def remove_stale() -> list[str]:
    """Delete namespaces left by test processes that are gone; returns their names."""
    done = _ip("netns", "list", check=False)
    removed = []
    for line in done.stdout.splitlines():
        ns = line.split()[0] if line.split() else ""
        m = _NAME.match(ns)
        if m is None:
            continue
        owner = int(m.group(1))
        if owner != os.getpid() and not Path(f"/proc/{owner}").exists():
            _delete_namespace(ns)
            removed.append(ns)
    return removed


class Host:
    """One test host: a namespace, ``eth0`` at ``address``, and the processes started in it."""

    def __init__(self, network: "Network", name: str, index: int):
        self.network = network
        self.name = name
        self.index = index
        self.ns = f"{network.prefix}-{name}"
        self.address = f"{SUBNET}.{index}"
        self.port_name = f"v{index}"  # its veth peer on the switch
        self.procs: list[subprocess.Popen] = []

    def _create(self) -> None:
        _ip("netns", "add", self.ns)
        _ip("-n", self.ns, "link", "set", "lo", "up")
        _ip("-n", self.network.switch, "link", "add", self.port_name, "type", "veth", "peer",
            "name", "eth0", "netns", self.ns)
        _ip("-n", self.network.switch, "link", "set", self.port_name, "master", "br0", "up")
        _ip("-n", self.ns, "addr", "add", f"{self.address}/{PREFIX_LEN}", "dev", "eth0")
        _ip("-n", self.ns, "link", "set", "eth0", "up")

    # ---- processes ------------------------------------------------------------------------

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(self.command(argv), **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), capture_output=True, text=True,
                              timeout=timeout_s)

    def pids(self) -> list[int]:
        return namespace_pids(self.ns)

    def call(self, fn, *args, timeout_s: float = 30.0):
        """``fn(*args)`` on a thread inside this host's namespace (sockets it makes are there)."""
        result: dict = {}

        def target() -> None:
            fd = os.open(NETNS_DIR / self.ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {self.ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            try:
                result["value"] = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result["error"] = exc

        thread = threading.Thread(target=target, name=f"in-{self.ns}", daemon=True)
        thread.start()
        thread.join(timeout_s)
        if thread.is_alive():
            raise TimeoutError(f"call in {self.ns} did not return in {timeout_s} s")
        if "error" in result:
            raise result["error"]
        return result.get("value")

    # ---- faults ---------------------------------------------------------------------------

    def link_down(self) -> None:
        _ip("-n", self.ns, "link", "set", "eth0", "down")

    def link_up(self) -> None:
        _ip("-n", self.ns, "link", "set", "eth0", "up")
        # Addresses stay; the connected route comes back with the link.

    def _blackhole(self, other: "Host", add: bool) -> None:
        verb = "add" if add else "del"
        _ip("-n", self.ns, "route", verb, "blackhole", f"{other.address}/32", check=add)

    def crash(self) -> list[int]:
        """SIGKILL every process of the host (a machine that lost power); returns their PIDs."""
        killed = self.signal_all(signal.SIGKILL)
        for proc in self.procs:
            if proc.pid in killed:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        return killed

    def pause(self) -> list[int]:
        return self.signal_all(signal.SIGSTOP)

    def resume(self) -> list[int]:
        return self.signal_all(signal.SIGCONT)

    def signal_all(self, sig: int) -> list[int]:
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.address}, ns={self.ns})"


class Network:
    """A bridge (in its own namespace) and the hosts on it; ``close`` deletes everything."""

    def __init__(self, tag: str = "n"):
        remove_stale()
        self.prefix = f"{PREFIX}{os.getpid()}-{tag}"
        self.switch = f"{self.prefix}-sw"
        self.hosts: dict[str, Host] = {}
        self._closed = False
        _ip("netns", "add", self.switch)
        try:
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def add_host(self, name: str) -> Host:
        if name in self.hosts:
            raise ValueError(f"host {name} exists")
        index = len(self.hosts) + 1
        if index > 250:
            raise ValueError("at most 250 hosts")
        host = Host(self, name, index)
        self.hosts[name] = host
        host._create()
        return host

    def cut(self, a: Host, b: Host) -> None:
        """No packet between ``a`` and ``b`` (either way); both still reach everyone else."""
        a._blackhole(b, True)
        b._blackhole(a, True)

    def heal(self, a: Host, b: Host) -> None:
        a._blackhole(b, False)
        b._blackhole(a, False)

    def isolate(self, host: Host) -> None:
        """Cut ``host`` from every other host (its link stays up, so its loopback and the
        processes on it go on as on a machine behind a failed switch port)."""
        for other in self.hosts.values():
            if other is not host:
                self.cut(host, other)

    def rejoin(self, host: Host) -> None:
        for other in self.hosts.values():
            if other is not host:
                self.heal(host, other)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            _delete_namespace(host.ns)
            for proc in host.procs:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        _delete_namespace(self.switch)

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
