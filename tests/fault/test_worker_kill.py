"""kill -9 of a worker under load: it is restarted, and every acknowledged message survives.

Normal flush mode (unflushThreshold=1000): an acknowledgement means the record is in the shared
mapping, i.e. the page cache, which a killed process cannot take with it.
"""

import os
import signal
import threading
import time
import zlib

import pytest

from metaq_fast.message import MessageSet
from metaq_fast.protocol import ResultReply

from tests.brokers import WireClient
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def load(port: int, stop: threading.Event, acked: list, refused: list, errors: list,
         window: int = 100, seconds_max: float = 60.0):
    """Pipelined puts to partitions 0..3 until ``stop``; records what was acknowledged.

    Runs in a thread: an exception there would not fail the test, so whatever ends the loop
    other than ``stop`` or the time limit (a bad reply, a bug here) goes to ``errors`` for the
    test to assert on.
    """
    try:
        _load(port, stop, acked, refused, window, seconds_max)
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(exc)


def _load(port: int, stop: threading.Event, acked: list, refused: list, window: int,
          seconds_max: float):
    deadline = time.monotonic() + seconds_max
    opaque = 0
    client = None
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if client is None:
                    client = WireClient(port, timeout_s=5)
                batch = []
                for _ in range(window):
                    opaque += 1
                    payload = b"m%08d-%08x" % (opaque, zlib.crc32(b"%d" % opaque))
                    batch.append((opaque, opaque % 4, payload))
                client.send(b"".join(b"put test %d %d 0 -1 %d\r\n" % (p, len(d), o) + d
                                     for o, p, d in batch))
                for o, p, d in batch:
                    reply = client.reply(timeout_s=10)
                    assert isinstance(reply, ResultReply) and reply.opaque == o, (o, reply)
                    if reply.code == 200:
                        _, partition, offset = bytes(reply.body).split(b" ")
                        acked.append((int(partition), int(offset), d))
                    else:
                        refused.append((o, reply.code))
            except (ConnectionError, OSError):
                if client is not None:
                    client.close()
                client = None  # the worker holding this connection died: reconnect
                time.sleep(0.05)
    finally:
        if client is not None:
            client.close()


def read_partition(port: int, partition: int) -> dict[int, bytes]:
    client = WireClient(port)
    out, offset = {}, 0
    while True:
        reply = client.request(b"get test g %d %d 1048576 1\r\n" % (partition, offset))
        if isinstance(reply, ResultReply):
            assert reply.code in (404,), (reply.code, bytes(reply.body))
            break
        decoded = MessageSet.decode(bytes(reply.data), offset)  # checks every CRC
        for msg in decoded:
            out[msg.offset] = msg.payload
        offset = decoded.next_offset
    client.close()
    return out


def test_kill_9_worker_under_load_restarts_and_loses_nothing_acknowledged(brokers):
    broker = brokers(workers=2, topics={"test": {"numPartitions": 4}},
                     system={"unflushThreshold": 1000})
    before = set(broker.worker_pids())
    assert len(before) == 2
    stop = threading.Event()
    acked: list = []
    refused: list = []
    errors: list = []
    threads = [threading.Thread(target=load, args=(broker.port, stop, acked, refused, errors),
                                daemon=True)
               for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) > 5000, timeout_s=30,
               message=lambda: f"load did not start (load errors: {errors!r})")
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)
    killed_at = len(acked)
    restarted = wait_until(lambda: (set(broker.worker_pids()) - before) or None, timeout_s=30,
                           message="the killed worker was not restarted")
    assert victim not in broker.worker_pids()
    wait_until(lambda: len(acked) > killed_at + 5000, timeout_s=30,
               message=lambda: f"puts did not resume after the restart (load errors: {errors!r})")
    stop.set()
    for t in threads:
        t.join(30)
    assert not [t for t in threads if t.is_alive()], "a load thread did not stop"
    assert not errors, f"a load thread failed: {errors[0]!r}"
    assert "died (signal SIGKILL)" in broker.log_text()
    stored = {}
    for partition in range(4):
        stored[partition] = read_partition(broker.port, partition)
    missing = [(p, o) for p, o, d in acked if stored[p].get(o) != d]
    assert not missing, f"{len(missing)} acknowledged messages lost or damaged: {missing[:5]}"
    assert all(code == 503 for _, code in refused), set(code for _, code in refused)
    assert len(restarted) == 1


def test_sigterm_stops_cleanly_and_keeps_everything(brokers):
    broker = brokers(workers=2, topics={"test": {"numPartitions": 4}},
                     system={"unflushThreshold": 100000, "unflushInterval": 3600000})
    client = WireClient(broker.port)
    payloads = {}
    for i in range(400):
        reply = client.request(b"put test %d 10 0 -1 %d\r\n%010d" % (i % 4, i, i))
        _, partition, offset = bytes(reply.body).split(b" ")
        payloads[(int(partition), int(offset))] = b"%010d" % i
    client.close()
    assert broker.stop() == 0
    assert "metaq-server stopped (exit 0)" in broker.log_text()
    assert not broker.worker_pids()
    for partition in range(4):
        segment = broker.data_path / f"test-{partition}" / "00000000000000000000.meta"
        assert segment.stat().st_size == 100 * 30  # cut to exactly its records, as MetaQ leaves it
    broker.start()
    for partition in range(4):
        stored = read_partition(broker.port, partition)
        assert {o: d for (p, o), d in payloads.items() if p == partition} == stored
    assert "dropped" not in broker.log_text().split("metaq-server stopped")[-1]


def test_killed_supervisor_takes_its_workers_along(brokers):
    broker = brokers(workers=2)
    workers = broker.worker_pids()
    broker.kill()
    for pid in workers:
        wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
                   open(f"/proc/{pid}/stat").read().split()[2] == "Z",
                   timeout_s=10, message=f"worker {pid} outlived its supervisor")
