"""Worker heartbeats: one monotonic timestamp per worker slot in memory shared across fork.

Imports: stdlib and numpy only.

The supervisor creates the block before forking; each worker's event loop stores
``time.monotonic()`` in its slot every ``HEARTBEAT_INTERVAL_S`` and the supervisor reads how long
a slot has been silent (``CLOCK_MONOTONIC`` is one clock for every process of the machine). An
aligned 8-byte store is atomic on the platforms we run on, so neither side takes a lock.
"""

from __future__ import annotations

import mmap
import time

import numpy as np

HEARTBEAT_INTERVAL_S = 1.0


class Heartbeats:
    def __init__(self, slots: int):
        self._map = mmap.mmap(-1, max(1, slots) * 8)
        self._beats = np.frombuffer(self._map, dtype=np.float64)
        self._beats[:] = time.monotonic()

    def beat(self, slot: int) -> None:
        self._beats[slot] = time.monotonic()

    def silent_s(self, slot: int) -> float:
        """Seconds since ``slot`` last beat."""
        return time.monotonic() - float(self._beats[slot])


def start_beating(loop, heartbeats: Heartbeats, slot: int) -> None:
    """Beat from ``loop`` every ``HEARTBEAT_INTERVAL_S``: a loop that stops turning stops it."""

    def beat() -> None:
        heartbeats.beat(slot)
        loop.call_later(HEARTBEAT_INTERVAL_S, beat)

    beat()
