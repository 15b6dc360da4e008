"""The closed/offline partition block (broker/closed.py) shared by forked workers: concurrent
writers in different processes lose no update, and a reader never sees a torn block."""

from __future__ import annotations

import os
import time

from metaq_fast.broker.closed import ClosedPartitions

WRITES_PER_PROCESS = 300


def test_forked_writers_lose_no_update_and_readers_see_no_torn_block():
    block = ClosedPartitions()
    children = []
    for writer in range(2):
        pid = os.fork()
        if pid == 0:  # a worker: take its own partitions offline, one write each
            code = 0
            try:
                for p in range(WRITES_PER_PROCESS):
                    block.take_offline(f"w{writer}", p, f"flush failed ({writer}, {p})")
            except BaseException:  # noqa: BLE001 - reported through the exit code
                code = 1
            os._exit(code)
        children.append(pid)
    exits: dict[int, int] = {}
    reads, deadline = 0, time.monotonic() + 60
    while len(exits) < len(children) and time.monotonic() < deadline:
        items = block.offline_items()  # the supervisor's /health, while they write: a torn
        assert all(reason.startswith("flush failed") for _t, _p, reason, _s in items)  # block
        reads += 1                      # would raise here (JSONDecodeError) or hold junk
        for pid in children:
            if pid not in exits:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    exits[pid] = os.waitstatus_to_exitcode(status)
    assert sorted(exits.values()) == [0, 0], exits
    items = block.offline_items()
    assert len(items) == 2 * WRITES_PER_PROCESS, len(items)
    assert {(t, p) for t, p, _r, _s in items} == {
        (f"w{w}", p) for w in range(2) for p in range(WRITES_PER_PROCESS)}
    assert reads > 0


def test_closing_and_opening_keep_offline_marks():
    block = ClosedPartitions()
    assert block.take_offline("t", 1, "fdatasync failed")
    assert not block.take_offline("t", 1, "again")  # already offline: first reason stays
    assert block.close_partitions("t", 0, 2) == 3
    assert ("t", 0) in block and ("t", 1) in block
    assert block.open_partitions("t") == 3
    assert ("t", 1) not in block
    assert block.offline_reason(("t", 1)) == "fdatasync failed"
