"""The supervisor under worker faults (issue 11.7): boot errors after a restart, the five-in-a-row
rule, file descriptors of failed restarts, exit codes of a clean stop, and the heartbeat.

A restarted worker is made to fail its start from outside, for real: the test holds the
abstract unix socket name the worker binds for forwarded puts (``\\0metaq-fast-<supervisor
pid>-<port>-worker-<slot>``, ``broker/routing.py``), so the new worker's ``bind`` fails with
EADDRINUSE exactly as it would if the name were still held. The supervisor is stopped
(SIGSTOP) while the worker is killed and the name taken, so the test never races the restart.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.brokers import BrokerProcess, WireClient
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def worker_slots(broker: BrokerProcess) -> dict[int, int]:
    """slot -> pid of the live workers, from the supervisor's log (``worker N started (pid P)``)
    checked against /proc (the ready file only knows the first generation)."""
    slots: dict[int, int] = {}
    for match in re.finditer(r"worker (\d+) started \(pid (\d+)\)", broker.log_text()):
        slots[int(match[1])] = int(match[2])
    return {slot: pid for slot, pid in slots.items() if Path(f"/proc/{pid}").exists()}


def socket_name(broker: BrokerProcess, slot: int) -> bytes:
    return b"\0metaq-fast-%d-%d-worker-%d" % (broker.pid, broker.port, slot)


def hold_name(name: bytes, timeout_s: float = 10.0) -> socket.socket:
    """Bind ``name`` as soon as its holder (a killed worker) has released it."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(name)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def put_direct(port: int, opaque: int, timeout_s: float = 5.0) -> int:
    """A put through a worker's own port (only that worker accepts there); the reply code."""
    client = WireClient(port, timeout_s=timeout_s)
    try:
        reply = client.request(b"put test 0 5 0 -1 %d\r\nhello" % opaque, timeout_s=timeout_s)
        return reply.code
    finally:
        client.close()


def serves(port: int) -> bool:
    try:
        return put_direct(port, 1, timeout_s=2.0) == 200
    except OSError:
        return False


def kill_worker_and_hold_its_name(broker: BrokerProcess, slot: int) -> socket.socket:
    pid = worker_slots(broker)[slot]
    os.kill(broker.pid, signal.SIGSTOP)  # no restart while the name is being taken
    try:
        os.kill(pid, signal.SIGKILL)
        return hold_name(socket_name(broker, slot))
    finally:
        os.kill(broker.pid, signal.SIGCONT)


def boot_failures(broker: BrokerProcess, slot: int) -> int:
    return broker.log_text().count(f"worker {slot} failed to start")


def test_a_boot_error_after_a_restart_is_retried_and_a_clean_stop_exits_0(tmp_path):
    broker = BrokerProcess(tmp_path / "b0", workers=2, topics={"test": {"numPartitions": 4}})
    broker.start()
    held = None
    try:
        direct = broker.info["direct_ports"]
        assert all(serves(port) for port in direct)
        supervisor_fds = fd_count(broker.pid)
        held = kill_worker_and_hold_its_name(broker, 1)
        wait_until(lambda: boot_failures(broker, 1) >= 2, timeout_s=30,
                   message=lambda: f"restarts did not fail as set up:\n{broker.log_tail()}")
        assert broker.alive(), "one boot error after a restart stopped the broker"
        held.close()
        held = None
        wait_until(lambda: serves(direct[1]), timeout_s=30,
                   message=lambda: f"worker 1 not back after the name was freed:\n"
                                   f"{broker.log_tail()}")
        assert serves(direct[0])
        # Each failed restart's report pipe is closed: none is left behind (the new worker's
        # own is closed once the supervisor's loop has read its "ready").
        wait_until(lambda: fd_count(broker.pid) == supervisor_fds, timeout_s=5,
                   message=lambda: f"{fd_count(broker.pid)} fds open, {supervisor_fds} before")
        assert broker.stop() == 0, broker.log_tail()
    finally:
        if held is not None:
            held.close()
        broker.stop()


def test_a_slot_that_never_boots_stops_the_broker_after_five_tries(tmp_path):
    broker = BrokerProcess(tmp_path / "b0", workers=2, topics={"test": {"numPartitions": 2}})
    broker.start()
    held = None
    try:
        held = kill_worker_and_hold_its_name(broker, 0)
        broker.proc.wait(60)  # back-offs 0.5 + 1 + 2 + 4 s between the tries
        assert broker.proc.returncode == 1
        log = broker.log_text()
        assert "worker 0 died young 5 times in a row; stopping the broker" in log
        assert boot_failures(broker, 0) == 4  # the kill, then four failed starts
    finally:
        if held is not None:
            held.close()
        broker.stop()


def test_a_worker_that_stops_beating_is_killed_and_restarted(tmp_path):
    broker = BrokerProcess(tmp_path / "b0", workers=2, topics={"test": {"numPartitions": 2}},
                           system={"workerTimeoutMs": 2000})
    broker.start()
    try:
        direct = broker.info["direct_ports"]
        assert serves(direct[0])
        stuck = worker_slots(broker)[0]
        os.kill(stuck, signal.SIGSTOP)  # its loop no longer turns
        stopped = time.monotonic()
        wait_until(lambda: worker_slots(broker).get(0, stuck) != stuck, timeout_s=15,
                   message=lambda: f"the silent worker was not replaced:\n{broker.log_tail()}")
        replaced_s = time.monotonic() - stopped
        assert 1.5 <= replaced_s <= 8.0, replaced_s
        assert not Path(f"/proc/{stuck}").exists() or _is_zombie(stuck)
        assert "has not beaten for" in broker.log_text()
        wait_until(lambda: serves(direct[0]), timeout_s=15, message="restarted worker not serving")
        # A worker that beats is left alone: the other one kept its pid all along.
        assert worker_slots(broker)[1] == broker.info["workers"]["1"]
        assert broker.stop() == 0
    finally:
        broker.stop()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
