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


def config_for(tmp_path, delete_when: str):
    return parse_config(
        f"[system]\nbrokerId=0\nmaxSegmentSize=100\ndataPath={tmp_path / 'data'}\n"
        f"deletePolicy=delete,1h\ndeleteWhen={delete_when}\n[zookeeper]\nzk.zkEnable=false\n"
        f"[topic=old]\n", tmp_path / "server.ini")


def old_segments(tmp_path) -> list[int]:
    """A partition of four closed segments two hours old (past deletePolicy=delete,1h)."""
    table = PartitionTable(config_for(tmp_path, "0 0 6,18 * * ?"), slot=0, workers=1,
                           ids=MessageIdAllocator(0))
    log = table.log_for("old", 0, create=True)
    for _ in range(4):
        log.append_datas([b"x" * 80])
    starts = log.segment_starts()
    assert len(starts) == 5  # four full segments and the active one
    log.close()
    two_hours_ago = time.time() - 7200
    for start in starts:
        os.utime(files.data_file(log.directory, start), (two_hours_ago, two_hours_ago))
    return starts


def table_firing_in(tmp_path, seconds: int) -> PartitionTable:
    """A worker's table over those segments, whose deleteWhen fires once a minute, at the
    second ``seconds`` from now (computed after the set-up, which may be slow)."""
    fire_second = (dt.datetime.now() + dt.timedelta(seconds=seconds)).second
    table = PartitionTable(config_for(tmp_path, f"{fire_second} * * * * ?"), slot=0, workers=1,
                           ids=MessageIdAllocator(0))
    table.log_for("old", 0, create=True)  # opened (recovered) as a starting worker does
    return table


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


def test_a_firing_time_passed_while_the_loop_was_busy_still_runs(tmp_path):
    starts = old_segments(tmp_path)
    table = table_firing_in(tmp_path, 3)  # 2..3 s from now
    log = table.logs[("old", 0)]
    # the loop is stuck from 0.5 s on for LATE_S: over the firing time, and past it by > 2 s
    scheduler = run_scheduler(table, until_s=0.5 + LATE_S + 1.0, block=(0.5, LATE_S))
    assert scheduler.runs == 1
    assert log.segment_starts() == starts[-1:]  # the closed, expired segments went
    assert not files.data_file(log.directory, starts[0]).exists()


def test_a_firing_time_not_reached_deletes_nothing(tmp_path):
    starts = old_segments(tmp_path)
    table = table_firing_in(tmp_path, 30)
    log = table.logs[("old", 0)]
    scheduler = run_scheduler(table, until_s=2.0, block=(0.5, 1.0))
    assert scheduler.runs == 0
    assert log.segment_starts() == starts
    assert all(files.data_file(log.directory, s).exists() for s in starts)
