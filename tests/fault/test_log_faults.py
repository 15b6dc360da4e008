"""A partition log and its flusher when the disk fails them, in a process of their own.

Each case runs a short script in a child Python (real files, real syscalls): failing fdatasync
comes from the LD_PRELOAD library of test_fsync_failure.py (EIO under one directory while a
trigger file exists), a descriptor shortage from RLIMIT_NOFILE. The script prints one JSON line
the test checks. Cases (issue 11, found by review):

* a seal that fails during a roll, in group commit, fails the replies already waiting for the
  flush of that iteration (they used to wait for ever, and the whole connection behind them);
* a roll that waited for the lock while a flush failed does not seal and move the recovery
  point past the lost pages;
* after a failed flush, the next open drops what group commit never acknowledged, and writes
  again (keeps) what ``unflushThreshold > 0`` acknowledged;
* an empty segment whose bigger replacement cannot be made (EMFILE) is made on the next try;
* a segment that cannot be opened whole leaves no descriptor behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.brokers import REPO
from tests.fault.test_fsync_failure import fsync_shim  # noqa: F401 - the fixture

PRELUDE = """
import asyncio, json, os, resource, sys
from pathlib import Path
from metaq_fast.broker.counters import CounterRow
from metaq_fast.broker.flusher import Flusher
from metaq_fast.errors import StorageError
from metaq_fast.message import MessageSet
from metaq_fast.storage import FlushPolicy, MessageIdAllocator, PartitionLog, files
from metaq_fast.storage.faults import PartitionOfflineError, create_segment
data = Path(sys.argv[1])
trigger = Path(sys.argv[2])

def open_log(threshold, segment_bytes=4096):
    return PartitionLog(data, "t", 0, segment_bytes_max=segment_bytes,
                        flush_policy=FlushPolicy(threshold, 10_000), ids=MessageIdAllocator(0))

def payloads(log):
    found, offset = [], log.first_offset
    while offset < log.visible_end:
        decoded = MessageSet.decode(bytes(log.read(offset, 1 << 20).view))
        assert decoded.consumed, offset
        found += [bytes(p) for p in decoded.payloads()]
        offset += decoded.consumed
    return found

def fds():
    return len(os.listdir("/proc/self/fd"))

def fail_a_flush(log):  # one flush fails with EIO (the shim); fdatasync works again after
    trigger.touch()
    try:
        log.flush()
        raise AssertionError("the flush did not fail: is the shim loaded?")
    except PartitionOfflineError:
        pass
    finally:
        trigger.unlink()

def lowest_free_fd():
    probe = os.open("/dev/null", os.O_RDONLY)
    os.close(probe)
    return probe
"""


def run(tmp_path, script: str, shim=None, only: str = "") -> dict:
    data = tmp_path / "data"
    trigger = tmp_path / "fail-now"
    env = dict(os.environ)
    if shim is not None:
        env.update(LD_PRELOAD=str(shim), METAQ_TEST_FSYNC_FAIL_DIR=str(data / "t-0"),
                   METAQ_TEST_FSYNC_FAIL_TRIGGER=str(trigger), METAQ_TEST_FSYNC_FAIL_ONLY=only)
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script), str(data),
                           str(trigger)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_seal_failing_in_a_roll_fails_the_waiting_replies(tmp_path, fsync_shim):  # noqa: F811
    found = run(tmp_path, """
        loop = asyncio.new_event_loop()
        log = open_log(0, segment_bytes=4096)
        flusher = Flusher(loop, CounterRow(memoryview(bytearray(8 * 64)).cast("q")))
        flusher.start()
        failed_partitions = []
        flusher.on_failure = lambda t, p, reason: failed_partitions.append((t, p))
        result = log.append_datas([b"a" * 100])      # connection A: waits for this flush
        flusher.appended(log)
        waiting = flusher.flushed_future(log, result.end_offset)
        trigger.touch()
        try:                                          # connection B, same loop iteration:
            log.append_datas([b"b" * 4000])           # fills the segment; the roll's seal fails
            log.append_datas([b"c" * 100])
            refused = None
        except PartitionOfflineError as exc:
            refused = str(exc)
        trigger.unlink()
        async def wait():
            try:
                await asyncio.wait_for(asyncio.shield(waiting), 2.0)
                return "acknowledged"
            except asyncio.TimeoutError:
                return "still waiting"
            except PartitionOfflineError as exc:
                return "failed: " + str(exc)
        outcome = loop.run_until_complete(wait())
        print(json.dumps({"refused": refused, "outcome": outcome,
                          "offline": failed_partitions}))
    """, fsync_shim)
    assert found["refused"] and "sealing segment" in found["refused"], found
    assert found["outcome"].startswith("failed: sealing segment"), found
    assert found["offline"] == [["t", 0]], found


def test_replies_an_earlier_flush_covered_stand_when_a_later_one_fails(
        tmp_path, fsync_shim):  # noqa: F811
    found = run(tmp_path, """
        loop = asyncio.new_event_loop()
        log = open_log(0, segment_bytes=4096)
        flusher = Flusher(loop, CounterRow(memoryview(bytearray(8 * 64)).cast("q")))
        flusher.start()
        result = log.append_datas([b"a" * 100])
        flusher.appended(log)
        waiting = flusher.flushed_future(log, result.end_offset)
        trigger.touch()  # only the directory fsync fails: the seal's fdatasync works
        log.append_datas([b"b" * 3956])  # fills the segment exactly: sealed (durable), and the
        trigger.unlink()                 # roll after it fails (the append itself stands)
        async def wait():
            try:
                return "acknowledged at %d" % await asyncio.wait_for(asyncio.shield(waiting), 2.0)
            except asyncio.TimeoutError:
                return "still waiting"
            except PartitionOfflineError as exc:
                return "failed: " + str(exc)
        outcome = loop.run_until_complete(wait())
        # the put that filled the segment asks after the failure: durable, so acknowledged
        late = flusher.flushed_future(log, 4096)
        late_outcome = "acknowledged" if late.done() and late.exception() is None else "failed"
        print(json.dumps({"outcome": outcome, "failed": log.failed, "end": result.end_offset,
                          "visible": log.visible_end, "durable": log.flushed_offset,
                          "late": late_outcome}))
    """, fsync_shim, only="fsync")
    assert found["failed"] and "syncing directory" in found["failed"], found
    assert found["outcome"] == f"acknowledged at {found['end']}", found
    assert found["visible"] == found["durable"] == 4096, found  # both records, sealed
    assert found["late"] == "acknowledged", found


def test_a_roll_after_a_failed_flush_moves_no_recovery_point(tmp_path, fsync_shim):  # noqa: F811
    found = run(tmp_path, """
        log = open_log(1000)
        log.append_datas([b"x" * 100])
        before = log.state.recovery_point
        fail_a_flush(log)  # fdatasync works again: a seal now would vouch for the lost pages
        try:
            log._roll()   # as an append that passed its check before the flush failed
            rolled = "rolled"
        except PartitionOfflineError as exc:
            rolled = "refused: " + str(exc)
        print(json.dumps({"rolled": rolled, "before": before,
                          "after": log.state.recovery_point, "segments": log.segment_starts()}))
    """, fsync_shim)
    assert found["rolled"].startswith("refused: fdatasync"), found
    assert found["after"] == found["before"] == 0, found
    assert found["segments"] == [0], found


def test_reopen_after_a_failed_flush_drops_what_group_commit_never_acknowledged(
        tmp_path, fsync_shim):  # noqa: F811
    found = run(tmp_path, """
        log = open_log(0)
        log.append_datas([b"acknowledged"])
        log.flush()
        log.append_datas([b"answered 500"])
        fail_a_flush(log)
        log.close()
        log = open_log(0)
        print(json.dumps({"payloads": [p.decode() for p in payloads(log)],
                          "failed_mark": log.state.flush_failed, "failed": log.failed}))
        log.close()
    """, fsync_shim)
    assert found == {"payloads": ["acknowledged"], "failed_mark": False, "failed": None}


def test_reopen_after_a_failed_flush_keeps_what_a_threshold_acknowledged(
        tmp_path, fsync_shim):  # noqa: F811
    found = run(tmp_path, """
        log = open_log(1000)
        log.append_datas([b"flushed"])
        log.flush()
        log.append_datas([b"acknowledged, not flushed"])
        fail_a_flush(log)
        log.close()
        log = open_log(1000)
        print(json.dumps({"payloads": [p.decode() for p in payloads(log)],
                          "failed_mark": log.state.flush_failed,
                          "recovery_point": log.state.recovery_point, "end": log.end_offset}))
        log.close()
    """, fsync_shim)
    assert found["payloads"] == ["flushed", "acknowledged, not flushed"], found
    assert found["failed_mark"] == 0 and found["recovery_point"] == found["end"], found


def test_an_empty_segment_that_cannot_grow_is_grown_on_the_next_try(tmp_path):
    found = run(tmp_path, """
        log = open_log(1000, segment_bytes=4096)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free_fd() + 1, hard))
        try:
            log.append_datas([b"z" * 10000])     # bigger than the empty active segment
            first = "stored"
        except (StorageError, OSError) as exc:
            first = type(exc).__name__ + ": " + str(exc)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        meanwhile = (log.message_count(), log.segment_starts(),  # the partition still answers
                     files.data_file(log.directory, 0).exists())
        result = log.append_datas([b"z" * 10000])
        log.append_datas([b"small"])
        print(json.dumps({"first": first, "payloads": [len(p) for p in payloads(log)],
                          "at": result.first_offset, "meanwhile": meanwhile}))
        log.close()
    """)
    assert "Too many open files" in found["first"], found
    assert found["payloads"] == [10000, 5] and found["at"] == 0, found
    assert found["meanwhile"] == [0, [0], True], found


def test_a_segment_that_cannot_be_opened_whole_leaves_no_descriptor(tmp_path):
    found = run(tmp_path, """
        data.mkdir(parents=True)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        before = fds()
        errors = set()
        for spare in range(1, 16):   # the open fails at a different step each time
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free_fd() + spare, hard))
            try:
                create_segment(data, 0, 1 << 20).close()
                break
            except (StorageError, OSError) as exc:
                errors.add(spare)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        print(json.dumps({"before": before, "after": fds(), "errors": sorted(errors),
                          "left": sorted(os.listdir(data))}))
    """)
    assert len(found["errors"]) >= 3, found  # several attempts failed, at different steps
    assert found["after"] == found["before"], found


def test_a_tail_a_threshold_acknowledged_survives_a_switch_to_group_commit(
        tmp_path, fsync_shim):  # noqa: F811
    """The mark says in which mode the tail was written, and a later run's failure (its open's
    flush) does not overwrite it: a group-commit run must not cut what a threshold acked."""
    found = run(tmp_path, """
        log = open_log(1000)
        log.append_datas([b"flushed"])
        log.flush()
        log.append_datas([b"acknowledged by a threshold"])
        trigger.touch()
        try:
            log.flush()
        except PartitionOfflineError:
            pass
        log.close()
        log = open_log(0)             # restarted in group commit, the disk still failing
        offline_at_open = log.failed
        log.close()
        trigger.unlink()
        log = open_log(0)             # and again, the disk healed
        print(json.dumps({"offline_at_open": offline_at_open,
                          "payloads": [p.decode() for p in payloads(log)],
                          "failed_mark": log.state.flush_failed}))
        log.close()
    """, fsync_shim)
    assert found["offline_at_open"] and "failed at open" in found["offline_at_open"], found
    assert found["payloads"] == ["flushed", "acknowledged by a threshold"], found
    assert found["failed_mark"] == 0, found

