"""Worker heartbeats: one monotonic timestamp per worker slot in memory shared across fork.

Imports: stdlib and numpy only.

The supervisor creates the block before forking; each worker's event loop stores
``time.monotonic()`` in its slot every ``interval_s`` and the supervisor reads how long a slot
has been silent (``CLOCK_MONOTONIC`` is one clock for every process of the machine). An aligned
8-byte store is atomic on the platforms we run on, so neither side takes a lock.

The interval follows the timeout (``beat_interval_s``): a worker beats at least four times
within ``workerTimeoutMs``, so a loop held up for less than three quarters of the timeout (a
long call, a descheduled process) is never taken for a stuck one.
"""

from __future__ import annotations

import mmap
import time

import numpy as np

HEARTBEAT_INTERVAL_S = 1.0  # the longest interval: a long timeout does not slow the beat


def beat_interval_s(timeout_s: float) -> float:
    """How often a worker beats for a supervisor that kills it after ``timeout_s`` of silence."""
    return min(HEARTBEAT_INTERVAL_S, timeout_s / 4)


class Heartbeats:
    def __init__(self, slots: int, interval_s: float = HEARTBEAT_INTERVAL_S):
        self.interval_s = interval_s  # read by the forked workers (start_beating)
        self._map = mmap.mmap(-1, max(1, slots) * 8)
        self._beats = np.frombuffer(self._map, dtype=np.float64)
        self._beats[:] = time.monotonic()

    def beat(self, slot: int) -> None:
        self._beats[slot] = time.monotonic()

    def silent_s(self, slot: int) -> float:
        """Seconds since ``slot`` last beat."""
        return time.monotonic() - float(self._beats[slot])


def start_beating(loop, heartbeats: Heartbeats, slot: int) -> None:
    """Beat from ``loop`` every ``heartbeats.interval_s``: a loop that stops turning stops it."""
    interval_s = heartbeats.interval_s

    def beat() -> None:
        heartbeats.beat(slot)
        loop.call_later(interval_s, beat)

    beat()
