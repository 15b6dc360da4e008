"""A slave's worker copying its master: one ``replicate`` fetch loop per worker of the master.

Imports: asyncio, metaq_fast.backoff / errors / layout / protocol, broker.replica_control. No
ZooKeeper: the supervisor says whom to follow (``ReplicaRole``).

Each worker of the slave copies the partitions its own layout gives it (``layout.owner_of`` with
the slave's worker count). It reads the master's layout (``admin layout``), opens one connection
to each master worker's direct port, and on each keeps one fetch in flight listing the
partitions of that master worker it holds, with where its copy ends. Answers are applied in the
event loop (appends are memory copies into the mapping, as puts are): ``data`` appended as it
lies (storage/replica.py), ``diverged`` cut back to the end the master gives for our last epoch
(or to our own end of that epoch, the smaller), ``reset`` emptied to start at the master's
first offset (a partition we lack, or whose records the master deleted). In group commit
(``unflushThreshold <= 0``) what arrived is flushed before the next fetch says we hold it: a
synchronous master counts us only for what is durable here.

Failures (the master down, refusing, a malformed answer) end every loop of this follower; it
starts again after a jittered back-off, reading the layout anew. Each distinct failure is logged
once, and the recovery once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..backoff import Backoff, Retry
from ..errors import MetaqError, ProtocolError
from ..layout import owner_of
from ..protocol import (
    FetchPosition,
    ResponseDecoder,
    ResultReply,
    encode_replicate,
    parse_replica_entries,
)
from .counters import CounterRow
from .replica_control import ReplicaProgress, ReplicaRole, now_ms

log = logging.getLogger(__name__)

RETRY = Backoff(0.2, 5.0, jitter=0.2)
ANSWER_TIMEOUT_S = 10.0  # beyond the master's long poll: a master this silent is gone
SKIP_S = 5.0  # a partition that could not be copied here is left out of fetches this long
READ_BYTES = 1 << 20


class ReplicationError(MetaqError):
    """The master refused or garbled a fetch; the follower starts over."""


def parse_url(url: str) -> tuple[str, int]:
    """``meta://host:port`` -> (host, port); IPv6 hosts in brackets."""
    rest = url.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


class _Link:
    """One connection to a master worker: send a request, read its one answer."""

    def __init__(self, reader, writer, max_body: int):
        self.reader, self.writer = reader, writer
        self.decoder = ResponseDecoder(max_body_bytes=max_body)
        self.opaque = 0

    async def call(self, request_of, timeout_s: float) -> ResultReply:
        self.opaque = (self.opaque + 1) & 0x7FFFFFFF
        self.writer.write(request_of(self.opaque))
        async with asyncio.timeout(timeout_s):
            while True:
                for reply in self.decoder.read_commands():
                    if not isinstance(reply, ResultReply) or reply.opaque != self.opaque:
                        raise ReplicationError(f"unexpected answer {reply!r:.100}")
                    return reply
                data = await self.reader.read(READ_BYTES)
                if not data:
                    raise ReplicationError("the master closed the connection")
                self.decoder.feed(data)

    def close(self) -> None:
        self.writer.close()


class ReplicaFollower:
    def __init__(self, loop: asyncio.AbstractEventLoop, table, flusher, slot: int, workers: int,
                 progress: ReplicaProgress | None, config, counters: CounterRow | None = None):
        self.loop = loop
        self.counters = counters
        self.table = table
        self.flusher = flusher
        self.slot = slot
        self.workers = workers
        self.progress = progress
        self.config = config
        self.role: ReplicaRole | None = None
        self._task: asyncio.Task | None = None
        self._master_ends: dict[tuple[str, int], int] = {}
        self._skip: dict[tuple[str, int], float] = {}  # partition -> left out until (monotonic)
        self._last_problem: str | None = None
        self.max_body = config.replica_fetch_bytes_max + config.transfer_bytes_max + (1 << 20)

    def set_role(self, role: ReplicaRole) -> None:
        following = not role.is_master and role.leader
        same = (self.role is not None and self._task is not None and not self._task.done()
                and (role.leader, role.epoch, role.replica) ==
                (self.role.leader, self.role.epoch, self.role.replica))
        self.role = role
        if same:
            return
        self.stop()
        if following:
            self._task = self.loop.create_task(self._run(role))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # ---- the loops ----------------------------------------------------------------------------

    async def _run(self, role: ReplicaRole) -> None:
        retry = Retry(RETRY)
        while True:
            try:
                await self._follow(role, retry)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, MetaqError, ValueError) as exc:
                self._problem(f"replicating from {role.leader} failed: {exc}")
            await asyncio.sleep(retry.next_delay())

    async def _follow(self, role: ReplicaRole, retry: Retry) -> None:
        host, port = parse_url(role.leader)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                ANSWER_TIMEOUT_S)
        link = _Link(reader, writer, self.max_body)
        try:
            reply = await link.call(lambda o: b"admin layout %d\r\n" % o, ANSWER_TIMEOUT_S)
        finally:
            link.close()
        if reply.code != 200:
            raise ReplicationError(f"admin layout answered {reply.code}")
        lines = bytes(reply.body).decode().splitlines()
        master_workers = int(lines[0].split()[1])
        ports = {int(slot): int(p) for _w, slot, p in (line.split() for line in lines[2:])}
        loops = [self._fetch_loop(role, host, ports[m], m, master_workers, retry)
                 for m in range(master_workers)]
        tasks = [self.loop.create_task(coro) for coro in loops]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch_loop(self, role: ReplicaRole, host: str, port: int, master_slot: int,
                          master_workers: int, retry: Retry) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                ANSWER_TIMEOUT_S)
        link = _Link(reader, writer, self.max_body)
        wait_ms = self.config.slave.max_delay_ms if self.config.slave else 500
        try:
            while True:
                now = time.monotonic()
                positions = [self._position(log_) for (t, p), log_ in list(self.table.logs.items())
                             if owner_of(t, p, master_workers) == master_slot
                             and self._skip.get((t, p), 0) <= now]
                reply = await link.call(
                    lambda o: encode_replicate(role.replica, role.epoch, self.slot, self.workers,
                                               wait_ms, self.config.replica_fetch_bytes_max,
                                               positions, o),
                    ANSWER_TIMEOUT_S + wait_ms / 1000)
                if reply.code != 200:
                    raise ReplicationError(f"the master answered {reply.code}: "
                                           f"{bytes(reply.body)[:200].decode(errors='replace')}")
                entries = parse_replica_entries(reply.body)
                touched = self._apply(entries)
                self._caught_up(positions, entries)
                for log_ in touched:
                    if log_.flush_policy.group_commit:  # durable before we say we hold it
                        await self.flusher.flushed_future(log_, log_.end_offset)
                retry.reset()
                self._recovered(role)
                self._report(fetched=True)
        finally:
            link.close()

    @staticmethod
    def _position(log_) -> FetchPosition:
        return FetchPosition(log_.topic, log_.partition, log_.end_offset,
                             log_.epochs.latest_epoch, log_.active.start_offset)

    # ---- answers -------------------------------------------------------------------------------

    def _apply(self, entries) -> list:
        """Apply an answer's entries; the logs that took records. A partition whose entry
        cannot be applied here (its log offline, a full disk) is left out of the fetches for
        ``SKIP_S``; the others go on."""
        touched = []
        for e in entries:
            try:
                self._apply_one(e, touched)
            except (MetaqError, OSError) as exc:
                if isinstance(exc, ProtocolError):
                    raise
                self._skip[(e.topic, e.partition)] = time.monotonic() + SKIP_S
                self._problem(f"cannot copy {e.topic}-{e.partition}: {exc}")
        return touched

    def _apply_one(self, e, touched: list) -> None:
        key = (e.topic, e.partition)
        if e.kind == "data":
            log_ = self.table.log_for(e.topic, e.partition, create=True)
            self._master_ends[key] = e.log_end
            result = log_.append_replicated(e.offset, e.data, e.segment_start, e.epoch)
            if result is not None:
                self.flusher.appended(log_)
                touched.append(log_)
                if self.counters is not None:
                    self.counters.add_for(e.topic, e.partition, CounterRow.REPLICATED_MESSAGES,
                                          len(result))
                    self.counters.add_for(e.topic, e.partition, CounterRow.REPLICATED_BYTES,
                                          result.end_offset - result.first_offset)
            self._lag(e.topic, e.partition, e.log_end - log_.end_offset)
        elif e.kind == "diverged":
            log_ = self.table.log_for(e.topic, e.partition, create=True)
            _found, own_end = log_.epochs.end_offset_for(e.epoch, log_.end_offset)
            log_.truncate_to(max(log_.first_offset, min(e.offset, own_end)))
        elif e.kind == "reset":
            log_ = self.table.log_for(e.topic, e.partition, create=True)
            if (log_.first_offset, log_.end_offset) != (e.offset, e.offset):
                log_.reset_to(e.offset)  # and its epochs
            else:
                log_.epochs.truncate_from(0)  # empty already: no epoch of ours stays
            if e.epoch:
                log_.epochs.assign(e.epoch, e.offset)
            self._master_ends.setdefault(key, e.offset)
        elif e.kind == "failed":
            self._problem(f"the master could not serve {e.topic}-{e.partition}: {e.reason}")
        elif e.kind != "missing":
            raise ProtocolError(f"unknown replica entry {e.kind}")

    def _caught_up(self, positions, entries) -> None:
        """A listed partition the answer says nothing of is caught up (the master answers
        every partition with news)."""
        answered = {(e.topic, e.partition) for e in entries}
        for p in positions:
            if (p.topic, p.partition) not in answered:
                self._lag(p.topic, p.partition, 0)

    def _lag(self, topic: str, partition: int, lag_bytes: int) -> None:
        """Bytes of the partition the master had at its last answer that we still lack (more
        than one answer carries); when we last held all it had."""
        if self.counters is None:
            return
        self.counters.set_for(topic, partition, CounterRow.REPLICA_LAG_BYTES, max(0, lag_bytes))
        if lag_bytes <= 0:
            self.counters.set_for(topic, partition, CounterRow.REPLICA_CAUGHT_UP_MS, now_ms())

    def _report(self, fetched: bool) -> None:
        if self.progress is None:
            return
        lag = 0
        for key, log_ in self.table.logs.items():
            lag += max(0, self._master_ends.get(key, 0) - log_.end_offset)
        self.progress.record_own(self.slot, lag, fetched)

    def lag_bytes(self, topic: str, partition: int) -> int:
        log_ = self.table.logs.get((topic, partition))
        end = self._master_ends.get((topic, partition))
        return max(0, end - log_.end_offset) if log_ is not None and end is not None else 0

    def _problem(self, text: str) -> None:
        if text != self._last_problem:
            self._last_problem = text
            log.warning("%s; retrying", text)

    def _recovered(self, role: ReplicaRole) -> None:
        if self._last_problem is not None or not getattr(self, "_announced", False):
            self._announced = True
            self._last_problem = None
            log.info("replicating from %s as %s (epoch %d)", role.leader, role.replica, role.epoch)
