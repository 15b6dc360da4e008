"""The worker's retention timer (broker/retention.py) on a real event loop, over a real
partition table and real segment files: a run whose cron time passes while the loop is busy
still happens when the loop comes back, and a cron time that has not come deletes nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from concurrent.futures import ThreadPoolExecutor

from metaq_fast.broker.partitions import PartitionTable
from metaq_fast.broker.retention import RetentionScheduler
from metaq_fast.config import parse_config
from metaq_fast.storage import files
from metaq_fast.storage.ids import MessageIdAllocator

LATE_S = 4.0  # the loop is blocked this long across the firing time (the old window was 2 s)


def table_with_old_segments(tmp_path, delete_when: str) -> tuple[PartitionTable, list[int]]:
    config = parse_config(
        f"[system]\nbrokerId=0\nmaxSegmentSize=100\ndataPath={tmp_path / 'data'}\n"
        f"deletePolicy=delete,1h\ndeleteWhen={delete_when}\n[zookeeper]\nzk.zkEnable=false\n"
        f"[topic=old]\n", tmp_path / "server.ini")
    table = PartitionTable(config, slot=0, workers=1, ids=MessageIdAllocator(0))
    log = table.log_for("old", 0, create=True)
    for _ in range(4):
        log.append_datas([b"x" * 80])
    starts = log.segment_starts()
    assert len(starts) == 5  # four full segments and the active one
    two_hours_ago = time.time() - 7200
    for start in starts:
        os.utime(files.data_file(log.directory, start), (two_hours_ago, two_hours_ago))
    return table, starts


def run_scheduler(table, until_s: float, block=None) -> RetentionScheduler:
    """Run a RetentionScheduler on a fresh loop for ``until_s`` seconds; ``block`` = (after_s,
    for_s) stalls the loop thread that long, as a busy worker would."""
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(1)
    try:
        scheduler = RetentionScheduler(loop, table, executor)
        scheduler.start()
        if block is not None:
            loop.call_later(block[0], time.sleep, block[1])
        loop.run_until_complete(asyncio.sleep(until_s))
        scheduler.close()
    finally:
        executor.shutdown(wait=True)
        loop.close()
    return scheduler


def second_from_now(seconds: int) -> int:
    return (dt.datetime.now() + dt.timedelta(seconds=seconds)).second


def test_a_firing_time_passed_while_the_loop_was_busy_still_runs(tmp_path):
    fire_second = second_from_now(2)  # fires once a minute, at this second
    table, starts = table_with_old_segments(tmp_path, f"{fire_second} * * * * ?")
    log = table.logs[("old", 0)]
    # the loop is stuck from ~1 s before the firing time to ~2 s after it
    scheduler = run_scheduler(table, until_s=1.0 + LATE_S + 1.0, block=(0.8, LATE_S))
    assert scheduler.runs == 1
    assert log.segment_starts() == starts[-1:]  # the closed, expired segments went
    assert not files.data_file(log.directory, starts[0]).exists()


def test_a_firing_time_not_reached_deletes_nothing(tmp_path):
    fire_second = second_from_now(30)
    table, starts = table_with_old_segments(tmp_path, f"{fire_second} * * * * ?")
    log = table.logs[("old", 0)]
    scheduler = run_scheduler(table, until_s=2.0, block=(0.5, 1.0))
    assert scheduler.runs == 0
    assert log.segment_starts() == starts
    assert all(files.data_file(log.directory, s).exists() for s in starts)
