"""Partitions closed by an operator (MetaQ's closePartitions/openPartitions), shared by workers.

Imports: stdlib only.

Closed partitions refuse puts and gets with 403 until opened again. As in MetaQ the state is
runtime-only: a restart opens everything. The set lives in a shared memory block the supervisor
creates before forking: a generation counter and a JSON list. Readers compare the generation (one
8-byte read per request) and re-read the list only when it changed; writers serialise with an
``fcntl`` lock on the block's file descriptor.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import struct

BLOCK_BYTES = 256 * 1024
_HEADER = struct.Struct("<QI")  # generation, JSON length


class ClosedPartitions:
    def __init__(self):
        self._fd = os.memfd_create("metaq-closed-partitions")
        os.ftruncate(self._fd, BLOCK_BYTES)
        self._map = mmap.mmap(self._fd, BLOCK_BYTES)
        self._seen = -1
        self._set: frozenset[tuple[str, int]] = frozenset()

    def _load(self) -> frozenset[tuple[str, int]]:
        generation, length = _HEADER.unpack_from(self._map, 0)
        if generation != self._seen:
            raw = bytes(self._map[_HEADER.size : _HEADER.size + length]) if length else b"[]"
            self._set = frozenset((t, p) for t, p in json.loads(raw))
            self._seen = generation
        return self._set

    def __contains__(self, key: tuple[str, int]) -> bool:
        generation = struct.unpack_from("<Q", self._map, 0)[0]
        if generation == 0 and self._seen <= 0:
            return False
        return key in self._load()

    def items(self) -> list[tuple[str, int]]:
        return sorted(self._load())

    def _update(self, change) -> int:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._seen = -1
            current = set(self._load())
            before = len(current)
            change(current)
            raw = json.dumps(sorted(current)).encode("utf-8")
            if _HEADER.size + len(raw) > BLOCK_BYTES:
                raise ValueError("too many closed partitions")
            generation = _HEADER.unpack_from(self._map, 0)[0] + 1
            self._map[_HEADER.size : _HEADER.size + len(raw)] = raw
            _HEADER.pack_into(self._map, 0, generation, len(raw))
            return len(current) - before
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close_partitions(self, topic: str, start: int, end: int) -> int:
        """Close partitions ``start..end`` (inclusive, as MetaQ's JMX call) of ``topic``."""
        return self._update(lambda s: s.update((topic, p) for p in range(start, end + 1)))

    def open_partitions(self, topic: str) -> int:
        """Open every closed partition of ``topic``; returns how many were closed."""
        return -self._update(lambda s: s.difference_update({k for k in s if k[0] == topic}))
