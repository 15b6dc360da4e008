"""Broker counters shared by all processes of one broker (anonymous shared memory).

Imports: numpy and stdlib only.

The supervisor creates the block before forking, so every worker (and every restarted worker)
maps the same memory. Each worker writes only its own row, so no lock is needed; a ``stats``
answer sums the rows. Rows survive a worker restart, so totals never go backwards.
"""

from __future__ import annotations

import mmap

import numpy as np

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
)
INDEX = {name: i for i, name in enumerate(NAMES)}


class Counters:
    """``rows`` x ``len(NAMES)`` int64 counters in shared memory."""

    def __init__(self, rows: int):
        self.rows = rows
        self._map = mmap.mmap(-1, max(rows, 1) * len(NAMES) * 8)
        self.table = np.frombuffer(self._map, dtype=np.int64).reshape(max(rows, 1), len(NAMES))

    def row(self, slot: int) -> "CounterRow":
        return CounterRow(self.table[slot])

    def total(self, name: str) -> int:
        return int(self.table[:, INDEX[name]].sum())

    def totals(self) -> dict[str, int]:
        sums = self.table.sum(axis=0)
        return {name: int(sums[i]) for i, name in enumerate(NAMES)}


class CounterRow:
    """One worker's row; attribute-free fast increments: ``row.add(row.CMD_PUT, n)``."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray):
        self.values = values

    def add(self, index: int, amount: int = 1) -> None:
        self.values[index] += amount

    def __getitem__(self, name: str) -> int:
        return int(self.values[INDEX[name]])


for _name, _i in INDEX.items():
    setattr(CounterRow, _name.upper(), _i)
