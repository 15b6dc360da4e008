"""Broker counters shared by all processes of one broker (anonymous shared memory).

Imports: numpy and stdlib only.

Two blocks, both created by the supervisor before forking, so every worker (and every restarted
worker) maps the same memory:

* the worker table: ``rows`` x ``len(NAMES)`` int64, one row per worker slot. Each worker writes
  only its own row, so no lock is needed; a ``stats`` answer sums the rows. Rows survive a
  worker restart, so totals never go backwards.
* the partition table (``PartitionCounters``): per worker slot a region of up to
  ``PARTITION_SLOTS_MAX`` entries ``(topic, partition, values[NAMES], base[NAMES])``, the same
  figures per (topic, partition), for per-topic ``realtime`` stats and ``/metrics``. A worker
  appends entries to its own region only (entry first, then the region's used count), so
  readers in any process see whole entries; ``base`` holds the values at the last
  ``stats reset``, written by whoever resets.

Attribution: the handler calls ``CounterRow.attribute(topic, partition)`` before each command,
and every ``CounterRow.add`` while it is set also counts in that partition's entry; the handler
clears it after its batch of commands. Callbacks that run later (the owner's answer to a
forwarded put) use ``add_for`` with an explicit partition. Which partitions get an entry is
decided by ``PartitionWriter.accept`` (the worker's ``StatsService`` sets it: configured topics
with a partition in range, or partitions with a store), so a client asking for made-up topics
cannot fill the table; when a region is full the rest is counted in the worker row only.
"""

from __future__ import annotations

import logging
import mmap

import numpy as np

log = logging.getLogger(__name__)

NAMES = (
    "cmd_put",          # put and putm requests, failed ones included (MetaQ cmd_put)
    "cmd_get",          # get and getm requests
    "cmd_offset",       # offset requests plus gets answered 301 (MetaQ's rule)
    "get_miss",         # gets on a missing store, before the first segment, at/after the end
    "put_failed",       # put requests answered with an error
    "put_messages",     # messages appended
    "put_bytes",        # record bytes appended
    "get_messages",     # records served by getm (get serves byte ranges)
    "get_bytes",        # bytes served by get and getm
    "connections",      # connections open now
    "connections_total",
    "forwarded",        # puts forwarded to the owning worker
    "flushes",          # fdatasync rounds
    "flush_us_total",   # time spent in them
    "worker_starts",    # times this worker slot was started (restarts = starts - 1)
    "disk_full_refusals",  # put requests refused because the disk was full
    "fsync_failures",   # flushes that failed and took their partition offline
    "replicated_messages",  # records a slave copied from its master
    "replicated_bytes",     # their bytes
    "replica_lag_bytes",    # gauge (partition entries only): the master's end minus ours
    "replica_caught_up_ms",  # gauge (partition entries only): monotonic ms we last had it all
)
INDEX = {name: i for i, name in enumerate(NAMES)}

TOPIC_BYTES_MAX = 256  # topic names are at most 249 ASCII characters (names.py)
PARTITION_SLOTS_MAX = 4096  # (topic, partition) entries per worker; more count in totals only
_REJECTED_CACHE_MAX = 10_000  # remembered refusals of accept(), to keep refusals cheap

ENTRY_DTYPE = np.dtype([
    ("topic", f"S{TOPIC_BYTES_MAX}"),
    ("partition", "<i8"),
    ("values", "<i8", (len(NAMES),)),
    ("base", "<i8", (len(NAMES),)),
])


class Counters:
    """``rows`` x ``len(NAMES)`` int64 counters in shared memory, and the partition table."""

    def __init__(self, rows: int, partition_slots: int = PARTITION_SLOTS_MAX):
        self.rows = rows
        self._map = mmap.mmap(-1, max(rows, 1) * len(NAMES) * 8)
        self.table = np.frombuffer(self._map, dtype=np.int64).reshape(max(rows, 1), len(NAMES))
        self.partitions = PartitionCounters(max(rows, 1), partition_slots)
        self._writers: dict[int, PartitionWriter] = {}

    def row(self, slot: int) -> "CounterRow":
        return CounterRow(_int64s(self.table[slot]), self.writer(slot))

    def writer(self, slot: int) -> "PartitionWriter":
        """The one writer of region ``slot`` in this process (rebuilt from the region)."""
        found = self._writers.get(slot)
        if found is None:
            found = self._writers[slot] = PartitionWriter(self.partitions, slot)
        return found

    def total(self, name: str) -> int:
        return int(self.table[:, INDEX[name]].sum())

    def totals(self) -> dict[str, int]:
        sums = self.table.sum(axis=0)
        return {name: int(sums[i]) for i, name in enumerate(NAMES)}


class PartitionCounters:
    """The shared partition table: ``rows`` regions of ``slots`` entries (see module doc)."""

    def __init__(self, rows: int, slots: int):
        self.rows = rows
        self.slots = slots
        header_bytes = max(rows * 8, 64)
        self._map = mmap.mmap(-1, header_bytes + rows * slots * ENTRY_DTYPE.itemsize)
        self.used = np.frombuffer(self._map, dtype=np.int64, count=rows)
        self.entries = np.frombuffer(self._map, dtype=ENTRY_DTYPE, offset=header_bytes,
                                     count=rows * slots).reshape(rows, slots)

    def snapshot(self) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
        """``{(topic, partition): (values, base)}`` summed over every worker's region."""
        out: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        for row in range(self.rows):
            used = min(int(self.used[row]), self.slots)
            if not used:
                continue
            entries = self.entries[row, :used].copy()
            for topic, partition, values, base in zip(
                    entries["topic"].tolist(), entries["partition"].tolist(), entries["values"],
                    entries["base"]):
                key = (topic.decode("ascii", "replace"), int(partition))
                found = out.get(key)
                if found is None:
                    out[key] = (values.copy(), base.copy())
                else:
                    found[0][:] += values
                    found[1][:] += base
        return out

    def reset_baselines(self) -> None:
        """``stats reset``: what is counted now becomes the new zero of every entry."""
        for row in range(self.rows):
            used = min(int(self.used[row]), self.slots)
            region = self.entries[row]
            region["base"][:used] = region["values"][:used]


class PartitionWriter:
    """One worker's view of its region: finds or adds the entry of a (topic, partition)."""

    def __init__(self, table: PartitionCounters, row: int):
        self.table = table
        self.row = row
        self.accept = None  # callable(topic, partition) -> True/False/None (not yet); None = count nothing
        self._values = table.entries[row]["values"]
        self._index: dict[tuple[str, int], memoryview] = {}
        self._rejected: set[tuple[str, int]] = set()
        self._full_logged = False
        region = table.entries[row]
        for i in range(min(int(table.used[row]), table.slots)):  # a restarted worker's entries
            key = (region["topic"][i].decode("ascii", "replace"), int(region["partition"][i]))
            self._index[key] = _int64s(self._values[i])

    def values_for(self, topic: str, partition: int) -> memoryview | None:
        """The counters of (topic, partition) in this region, or None (not counted)."""
        key = (topic, partition)
        found = self._index.get(key)
        if found is not None:
            return found
        if key in self._rejected or self.accept is None:
            return None
        verdict = self.accept(topic, partition)
        if not verdict:
            if verdict is False:  # None: not yet, ask again next time
                if len(self._rejected) >= _REJECTED_CACHE_MAX:
                    self._rejected.clear()
                self._rejected.add(key)
            return None
        used = int(self.table.used[self.row])
        if used >= self.table.slots:
            if not self._full_logged:
                self._full_logged = True
                log.warning("per-partition counters full (%d entries): %s-%d and later "
                            "partitions are counted in the broker totals only",
                            self.table.slots, topic, partition)
            return None
        region = self.table.entries[self.row]
        region["topic"][used] = topic.encode("ascii")
        region["partition"][used] = partition
        self.table.used[self.row] = used + 1  # publish after the entry is written
        found = self._index[key] = _int64s(self._values[used])
        return found


def _int64s(array: np.ndarray) -> memoryview:
    """An int64 memoryview of a contiguous numpy vector: ``view[i] += n`` costs about a third
    of the same on the numpy array (no numpy scalar objects)."""
    return memoryview(array).cast("B").cast("q")


class CounterRow:
    """One worker's row; attribute-free fast increments: ``row.add(row.CMD_PUT, n)``."""

    __slots__ = ("values", "partitions", "_current", "_current_key")

    def __init__(self, values: memoryview, partitions: PartitionWriter | None = None):
        self.values = values
        self.partitions = partitions
        self._current: memoryview | None = None
        self._current_key: tuple[str, int] | None = None

    def add(self, index: int, amount: int = 1) -> None:
        self.values[index] += amount
        current = self._current
        if current is not None:
            current[index] += amount

    def attribute(self, topic: str | None, partition: int = -1) -> None:
        """Count what follows for (topic, partition) too; ``None`` stops that."""
        if topic is None or partition < 0 or self.partitions is None:
            self._current = self._current_key = None
        else:
            self._current_key = (topic, partition)
            self._current = self.partitions.values_for(topic, partition)

    def store_created(self, topic: str, partition: int) -> None:
        """A partition got its store while being attributed (a pattern topic's first put):
        count the rest of the command for it, now that ``accept`` says yes."""
        if self._current is None and self._current_key == (topic, partition):
            self._current = self.partitions.values_for(topic, partition)

    def add_for(self, topic: str, partition: int, index: int, amount: int = 1) -> None:
        """``add``, counted for (topic, partition) whatever is attributed now."""
        self.values[index] += amount
        if self.partitions is not None and partition >= 0:
            values = self.partitions.values_for(topic, partition)
            if values is not None:
                values[index] += amount

    def set_for(self, topic: str, partition: int, index: int, value: int) -> None:
        """Set a gauge of (topic, partition) (the worker row does not sum gauges)."""
        if self.partitions is not None and partition >= 0:
            values = self.partitions.values_for(topic, partition)
            if values is not None:
                values[index] = value

    def __getitem__(self, name: str) -> int:
        return int(self.values[INDEX[name]])


for _name, _i in INDEX.items():
    setattr(CounterRow, _name.upper(), _i)
