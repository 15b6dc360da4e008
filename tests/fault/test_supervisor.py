"""The supervisor under worker faults (issue 11.7): boot errors after a restart, the five-in-a-row
rule, file descriptors of failed restarts, exit codes of a clean stop, the heartbeat, deaths
while the broker starts, the boot deadline of a restarted worker, and what "died young" means.

A restarted worker is made to fail its start from outside, for real: the test holds the
abstract unix socket name the worker binds for forwarded puts (``\\0metaq-fast-<supervisor
pid>-<port>-worker-<slot>``, ``broker/connection.py``), so the new worker's ``bind`` fails with
EADDRINUSE exactly as it would if the name were still held. The supervisor is stopped
(SIGSTOP) while the worker is killed and the name taken, so the test never races the restart.

A worker is caught in its start for real: worker 1 of ``slow_data`` recovers a few hundred
partitions (about a millisecond each), so the test, which watches the supervisor's log for the
worker's fork, stops it (SIGSTOP) well before it is ready, and holds it there as long as the
test needs; ``catch_next_worker`` checks that the worker had not finished its recovery.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from metaq_fast.broker.supervisor import QUICK_DEATH_S
from metaq_fast.layout import owner_of
from metaq_fast.pdeath import die_with_parent

from tests.brokers import REPO, STARTED, BrokerProcess, WireClient
from tests.helpers import http_get, wait_until

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
                           system={"workerTimeoutMs": 1000})
    broker.start()
    try:
        direct = broker.info["direct_ports"]
        assert serves(direct[0])
        stuck = worker_slots(broker)[0]
        os.kill(stuck, signal.SIGSTOP)  # its loop no longer turns
        stopped = time.monotonic()
        wait_until(lambda: worker_slots(broker).get(0, stuck) != stuck, timeout_s=15,
                   message=lambda: f"the silent worker was not replaced:\n{broker.log_tail()}")
        # Killed about a second after it fell silent (the supervisor looks every 0.2 s), then
        # forked again after at most a short back-off.
        assert time.monotonic() - stopped <= 6.0
        assert not Path(f"/proc/{stuck}").exists() or _is_zombie(stuck)
        killed = re.search(rf"worker 0 \(pid {stuck}\) has not beaten for ([\d.]+) s "
                           r"\(workerTimeoutMs=1000\): killing it", broker.log_text())
        assert killed, broker.log_tail()
        assert 1.0 <= float(killed[1]) <= 2.0, killed[0]  # not before the timeout, nor long after
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


def test_a_worker_held_up_for_less_than_the_timeout_is_left_alone(tmp_path):
    """workerTimeoutMs=1000 is allowed: a worker whose loop is held up 0.3 to 0.5 s at a time (a
    long call, a descheduled process) still turns and must not be killed. The beat interval
    follows the timeout; with one beat a second it would look silent for up to 1.5 s. The
    hold-ups are of varied lengths, so that they do not fall into step with the beats."""
    broker = BrokerProcess(tmp_path / "b0", workers=2, topics={"test": {"numPartitions": 2}},
                           system={"workerTimeoutMs": 1000})
    broker.start()
    try:
        held = broker.info["workers"]["0"]
        lengths = random.Random(11)
        until = time.monotonic() + 6.0
        try:
            while time.monotonic() < until:
                os.kill(held, signal.SIGSTOP)
                time.sleep(lengths.uniform(0.3, 0.5))
                os.kill(held, signal.SIGCONT)
                time.sleep(0.05)
        except ProcessLookupError:
            pass  # killed and reaped: the assertions below say so
        finally:
            _cont(held)
        assert "has not beaten" not in broker.log_text(), broker.log_tail()
        assert worker_slots(broker).get(0) == held
        assert serves(broker.info["direct_ports"][0])
        assert broker.stop() == 0
    finally:
        broker.stop()


# ---- workers caught in their start ---------------------------------------------------------

SLOW_PARTITIONS = 300  # partitions worker 1 recovers in slow_data: some 0.3 s, 2 ms would do
SLOW_TOPICS = {"test": {"numPartitions": 2 * SLOW_PARTITIONS}}


def owned_partitions(slot: int, workers: int = 2) -> list[int]:
    """The partitions of ``test`` that ``slot`` owns."""
    return [p for p in range(2 * SLOW_PARTITIONS) if owner_of("test", p, workers) == slot]


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory) -> Path:
    """A data directory in which worker 1 (of 2) owns SLOW_PARTITIONS partitions with data."""
    directory = tmp_path_factory.mktemp("slow-data")
    # No flush per put: the seeding takes seconds, not a minute; the clean stop flushes all.
    broker = BrokerProcess(directory, workers=2, topics={"test": {
        "numPartitions": 2 * SLOW_PARTITIONS, "unflushThreshold": 100000}})
    broker.start()
    try:
        client = WireClient(broker.port, timeout_s=60)
        partitions = owned_partitions(1)
        for opaque, partition in enumerate(partitions):
            client.send(b"put test %d 5 0 -1 %d\r\nhello" % (partition, opaque))
        codes = {client.reply(60).code for _ in partitions}
        client.close()
        assert codes == {200}, codes
        assert broker.stop(timeout_s=60) == 0
    finally:
        broker.stop()
    return broker.data_path


def slow_broker(tmp_path: Path, slow_data: Path, **system) -> BrokerProcess:
    data = tmp_path / "data"
    shutil.copytree(slow_data, data)
    return BrokerProcess(tmp_path / "b0", workers=2, data_path=data, topics=SLOW_TOPICS,
                         system=system)


def launch(broker: BrokerProcess) -> None:
    """Start ``broker`` as ``BrokerProcess.start`` does, without waiting for it to be ready."""
    broker.write_config()
    broker.ready_path.unlink(missing_ok=True)
    with open(broker.log_path, "ab") as log:
        broker.proc = subprocess.Popen(
            [sys.executable, "-m", "metaq_fast.cli", "-f", str(broker.config_path),
             "--ready-file", str(broker.ready_path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
            preexec_fn=die_with_parent)
    STARTED.append(broker)


def await_ready(broker: BrokerProcess, timeout_s: float = 60.0) -> None:
    wait_until(lambda: broker.ready_path.exists() or not broker.alive(), timeout_s=timeout_s,
               message=lambda: f"broker not ready:\n{story(broker)}")
    assert broker.alive(), f"broker exited with {broker.proc.returncode}:\n{story(broker)}"
    broker.info = json.loads(broker.ready_path.read_text())


def forked(broker: BrokerProcess, slot: int) -> list[int]:
    """Pids of every worker forked for ``slot``, in order (the supervisor's log)."""
    return [int(m[1]) for m in re.finditer(rf"worker {slot} started \(pid (\d+)\)",
                                            broker.log_text())]


def recovered(broker: BrokerProcess, pid: int) -> bool:
    """Whether worker ``pid`` logged the end of its recovery (it is ready right after)."""
    return re.search(rf"\[worker-\d+ {pid}\] \S+: recovered ", broker.log_text()) is not None


def catch_next_worker(broker: BrokerProcess, slot: int, known: set[int]) -> int:
    """Stop (SIGSTOP) the next worker forked for ``slot`` in its recovery; its pid."""
    deadline = time.monotonic() + 30
    while True:
        new = [pid for pid in forked(broker, slot) if pid not in known]
        if new:
            os.kill(new[0], signal.SIGSTOP)
            time.sleep(0.05)  # a log line it was writing has landed
            assert not recovered(broker, new[0]), "worker caught too late: it had recovered"
            return new[0]
        assert time.monotonic() < deadline, f"no new worker {slot}:\n{story(broker)}"
        time.sleep(0.002)


def name_bound(broker: BrokerProcess, slot: int) -> bool:
    """Whether ``slot``'s worker has bound its forwarding socket (the step before ready)."""
    prefix = f"@metaq-fast-{broker.pid}-"
    for line in Path("/proc/net/unix").read_text().splitlines():
        if prefix in line and line.endswith(f"-worker-{slot}"):
            return True
    return False


def serves_slot(broker: BrokerProcess, slot: int) -> bool:
    """A put to a partition ``slot`` owns, through its own port, is answered 200."""
    port = broker.info["direct_ports"][slot]
    client = None
    try:
        client = WireClient(port, timeout_s=2.0)
        partition = owned_partitions(slot)[0]
        reply = client.request(b"put test %d 5 0 -1 7\r\nhello" % partition, timeout_s=2.0)
        return reply.code == 200
    except OSError:
        return False
    finally:
        if client is not None:
            client.close()


def story(broker: BrokerProcess, lines: int = 40) -> str:
    """The log's tail without the line per partition each recovery writes."""
    kept = [line for line in broker.log_text().splitlines() if ": opened test-" not in line]
    return "\n".join(kept[-lines:])


def logged_at(broker: BrokerProcess, pattern: str) -> float:
    """The time (s, from the log's timestamp) of the first line matching ``pattern``."""
    for line in broker.log_text().splitlines():
        if re.search(pattern, line):
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise AssertionError(f"nothing logged matches {pattern!r}:\n{story(broker)}")


def _cont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def test_a_worker_that_dies_after_it_was_ready_while_the_broker_starts_is_restarted(
        tmp_path, slow_data):
    broker = slow_broker(tmp_path, slow_data, dashboardHttpPort=0)
    launch(broker)
    slow = None
    try:
        slow = catch_next_worker(broker, 1, set())  # the broker's start waits for it
        fast = wait_until(lambda: forked(broker, 0), timeout_s=10)[0]
        wait_until(lambda: re.search(rf"worker 0 \(pid {fast}\) ready in", broker.log_text()),
                   timeout_s=30, message=lambda: f"worker 0 did not start:\n{story(broker)}")
        os.kill(fast, signal.SIGKILL)  # ready, and the supervisor has read it
        wait_until(lambda: re.search(rf"worker 0 \(pid {fast}\) died", broker.log_text()),
                   timeout_s=10, message=lambda: story(broker))
        _cont(slow)
        await_ready(broker)
        for slot in (0, 1):
            wait_until(lambda: serves_slot(broker, slot), timeout_s=30,
                       message=lambda: f"worker {slot} not serving:\n{story(broker)}")
        wait_until(lambda: http_get(broker.info["dashboard_port"], "/health")[0] == 200,
                   timeout_s=10, message=lambda: str(http_get(broker.info["dashboard_port"],
                                                              "/health")))
        assert len(forked(broker, 0)) == 2  # forked again once, not in a loop
        assert broker.stop() == 0, story(broker)
    finally:
        if slow is not None:
            _cont(slow)
        broker.stop()


def test_a_restarted_worker_that_hangs_in_its_start_is_killed_at_its_deadline(
        tmp_path, slow_data):
    broker = slow_broker(tmp_path, slow_data, workerStartTimeoutMs=3000)
    broker.start()
    hung = None
    try:
        first = broker.info["workers"]["1"]
        os.kill(first, signal.SIGKILL)
        hung = catch_next_worker(broker, 1, {first})
        caught = time.monotonic()
        wait_until(lambda: _is_zombie(hung), timeout_s=15,
                   message=lambda: f"the hung worker was left alone:\n{story(broker)}")
        # The deadline counts from its fork, a few milliseconds before it was caught.
        assert 2.5 <= time.monotonic() - caught <= 6.0
        log = broker.log_text()
        assert re.search(rf"worker 1 \(pid {hung}\) not ready [\d.]+ s after its restart "
                         r"\(workerStartTimeoutMs=3000\): killing it", log), story(broker)
        # A death before ready is a young one: restarted after a back-off (logged once the
        # supervisor has reaped it, which may be a moment after the kill was seen)
        wait_until(lambda: re.search(rf"worker 1 \(pid {hung}\) died \(signal SIGKILL\) before "
                                     r"it was ready; restarting it in [\d.]+ s", broker.log_text()),
                   timeout_s=10, message=lambda: story(broker))
        wait_until(lambda: serves_slot(broker, 1), timeout_s=30,
                   message=lambda: f"worker 1 not back:\n{story(broker)}")
        assert serves_slot(broker, 0)
        assert broker.stop() == 0, story(broker)
    finally:
        if hung is not None:
            _cont(hung)
        broker.stop()


def test_a_worker_that_dies_right_after_a_long_start_is_restarted_after_a_back_off(
        tmp_path, slow_data):
    """Lifetime counts from readiness: a worker whose start took longer than QUICK_DEATH_S and
    that dies as soon as it serves died young, so its next fork waits for the back-off."""
    broker = slow_broker(tmp_path, slow_data)
    broker.start()
    slow = None
    try:
        first = broker.info["workers"]["1"]
        os.kill(first, signal.SIGKILL)
        slow = catch_next_worker(broker, 1, {first})
        time.sleep(QUICK_DEATH_S + 0.5)  # a start longer than QUICK_DEATH_S
        _cont(slow)
        wait_until(lambda: serves_slot(broker, 1), timeout_s=30,
                   message=lambda: f"worker 1 not serving:\n{story(broker)}")
        os.kill(slow, signal.SIGKILL)
        wait_until(lambda: len(forked(broker, 1)) == 3, timeout_s=30,
                   message=lambda: f"worker 1 not forked again:\n{story(broker)}")
        died = logged_at(broker, rf"worker 1 \(pid {slow}\) died")
        again = logged_at(broker, rf"worker 1 started \(pid {forked(broker, 1)[2]}\)")
        assert again - died >= 0.4, (
            f"forked again {again - died:.3f} s after it died: no back-off\n{story(broker)}")
        wait_until(lambda: serves_slot(broker, 1), timeout_s=30,
                   message=lambda: f"worker 1 not back:\n{story(broker)}")
        assert broker.stop() == 0, story(broker)
    finally:
        if slow is not None:
            _cont(slow)
        broker.stop()
