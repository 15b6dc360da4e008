"""Runs each topic's retention policy on its ``deleteWhen`` schedule, in a worker.

Imports: stdlib, metaq_fast.cron / storage.

A topic's policy (``deletePolicy``, e.g. ``delete,168``) is applied at the times its Quartz cron
(``deleteWhen``, MetaQ's default ``0 0 6,18 * * ?``) names, to the partitions this worker owns.
Segments are taken out of the log on the event loop thread (cheap, and the only thread that
changes the log's segment list); their files are deleted, renamed or zipped in a background
thread, so a large archive never stalls serving.

The timer is armed for the earliest next firing time of all schedules (at most an hour ahead,
then armed again); when it runs, every schedule whose firing time it was armed with has come is
run, however late the loop was (a busy loop or a suspended process must not skip a run until
the cron's next time, 12 hours later with MetaQ's default). A schedule fires at most once per
firing time, and never before it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from ..cron import CronSchedule
from ..storage import RetentionPolicy, dispose, expire

log = logging.getLogger(__name__)

ARM_AHEAD_S_MAX = 3600.0  # the timer is re-armed at least hourly (wall clock changes)


class RetentionScheduler:
    def __init__(self, loop, table, executor):
        self.loop = loop
        self.table = table
        self.executor = executor
        self._timer = None
        self._due_at: dict[str, dt.datetime] = {}  # cron expression -> firing time armed for
        self.runs = 0

    def start(self) -> None:
        self._arm()

    def _schedules(self) -> dict[str, CronSchedule]:
        crons = {self.table.config.delete_when}
        for settings in self.table.config.topic_configs.values():
            crons.add(settings.delete_when)
        return {expr: CronSchedule.parse(expr) for expr in crons}

    def _arm(self) -> None:
        now = dt.datetime.now()
        self._due_at = {expr: t for expr, t in ((expr, c.next_after(now)) for expr, c in
                                                self._schedules().items()) if t is not None}
        if not self._due_at:
            return
        delay = max(0.0, (min(self._due_at.values()) - now).total_seconds())
        self._timer = self.loop.call_later(min(delay, ARM_AHEAD_S_MAX), self._due)

    def _due(self) -> None:
        now = dt.datetime.now()
        fired = {expr for expr, at in self._due_at.items() if at <= now}
        try:
            if fired:
                self.run_now(lambda settings: settings.delete_when in fired)
        finally:
            self._arm()

    def run_now(self, applies=lambda settings: True) -> int:
        """Apply the policies now (``applies(topic settings)`` picks the topics); the number of
        segments taken out."""
        self.runs += 1
        taken = 0
        now_s = time.time()
        for (topic, _partition), partition_log in list(self.table.logs.items()):
            settings = self.table.settings_for_existing(topic)
            if not applies(settings):
                continue
            policy = RetentionPolicy(settings.delete_policy.name, settings.delete_policy.retention_ms,
                                     settings.delete_policy.compress)
            for start, path in expire(partition_log, policy, now_s):
                taken += 1
                self.executor.submit(_dispose_logged, partition_log.directory, start, path, policy)
        return taken

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _dispose_logged(directory, start, path, policy) -> None:
    try:
        dispose(directory, start, path, policy)
    except OSError as exc:
        log.error("retention of %s failed: %s", path, exc)
