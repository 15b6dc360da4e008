"""Partitions closed by an operator (MetaQ's closePartitions/openPartitions) and partitions
taken offline by a storage failure, shared by the workers and the supervisor.

Imports: stdlib only.

Closed partitions refuse puts and gets with 403 until opened again. As in MetaQ the state is
runtime-only: a restart opens everything.

Offline partitions (a failed fdatasync: Linux may have dropped the dirty pages it could not write,
and a later fsync would succeed without them) refuse puts with 503 and the reason; reads go on.
The owning worker takes a partition offline (``take_offline``); nothing takes it back but a
restart of the broker, whose start-up recovery re-validates every byte after the last good
flush, as Kafka keeps a failed log directory offline until the broker restarts. A restarted
worker does not clear the mark: the block belongs to the supervisor.

The block lives in shared memory the supervisor creates before forking: a generation counter and
a JSON object ``{"closed": [[topic, partition]...], "offline": [[topic, partition, reason,
since_s]...]}``. Readers compare the generation (one 8-byte read per request) and re-read the
JSON only when it changed; writers serialise with an ``fcntl`` lock on the block's descriptor.
The generation is a sequence lock: a writer makes it odd before it writes the JSON and even
after, and a reader keeps what it copied only if the generation was the same even number before
and after the copy (readers run in other processes, without the lock).
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import struct
import time

BLOCK_BYTES = 256 * 1024
READ_TRIES = 10_000  # a write takes microseconds; a reader gives up only on a stuck writer
_HEADER = struct.Struct("<QI")  # generation, JSON length


class ClosedPartitions:
    def __init__(self):
        self._fd = os.memfd_create("metaq-closed-partitions")
        os.ftruncate(self._fd, BLOCK_BYTES)
        self._map = mmap.mmap(self._fd, BLOCK_BYTES)
        self._seen = -1
        self._set: frozenset[tuple[str, int]] = frozenset()
        self._offline: dict[tuple[str, int], tuple[str, float]] = {}

    def _load(self) -> frozenset[tuple[str, int]]:
        for _ in range(READ_TRIES):
            generation, length = _HEADER.unpack_from(self._map, 0)
            if generation == self._seen:
                return self._set
            if generation % 2:
                continue  # a writer is at work
            raw = bytes(self._map[_HEADER.size : _HEADER.size + length]) if length else b"{}"
            if _HEADER.unpack_from(self._map, 0)[0] != generation:
                continue  # written meanwhile: the copy may be torn
            state = json.loads(raw)
            self._set = frozenset((t, p) for t, p in state.get("closed", ()))
            self._offline = {(t, p): (reason, since_s)
                             for t, p, reason, since_s in state.get("offline", ())}
            self._seen = generation
            return self._set
        return self._set  # a writer held it all along: the last view, until the next request

    def _changed(self) -> bool:
        """False while nothing was ever written (the common case: one 8-byte read)."""
        return struct.unpack_from("<Q", self._map, 0)[0] != 0 or self._seen > 0

    def __contains__(self, key: tuple[str, int]) -> bool:
        return self._changed() and key in self._load()

    def items(self) -> list[tuple[str, int]]:
        return sorted(self._load())

    def _update(self, change) -> int:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._seen = -1
            current = set(self._load())
            offline = dict(self._offline)
            before = len(current) + len(offline)
            change(current, offline)
            raw = json.dumps({"closed": sorted(current),
                              "offline": [[t, p, reason, since_s] for (t, p), (reason, since_s)
                                          in sorted(offline.items())]}).encode("utf-8")
            if _HEADER.size + len(raw) > BLOCK_BYTES:
                raise ValueError("too many closed or offline partitions")
            generation, length = _HEADER.unpack_from(self._map, 0)
            generation += generation % 2  # odd: a writer died mid-write; its JSON is replaced
            _HEADER.pack_into(self._map, 0, generation + 1, length)  # odd: being written
            self._map[_HEADER.size : _HEADER.size + len(raw)] = raw
            _HEADER.pack_into(self._map, 0, generation + 2, len(raw))
            return len(current) + len(offline) - before
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close_partitions(self, topic: str, start: int, end: int) -> int:
        """Close partitions ``start..end`` (inclusive, as MetaQ's JMX call) of ``topic``."""
        return self._update(lambda s, _o: s.update((topic, p) for p in range(start, end + 1)))

    def open_partitions(self, topic: str) -> int:
        """Open every closed partition of ``topic``; returns how many were closed (offline
        partitions stay offline: see the module docstring)."""
        return -self._update(
            lambda s, _o: s.difference_update({k for k in s if k[0] == topic}))

    # ---- offline after a storage failure ----------------------------------------------------

    def offline_reason(self, key: tuple[str, int]) -> str | None:
        """Why the partition is offline, or None if it is not."""
        if not self._changed():
            return None
        self._load()
        found = self._offline.get(key)
        return None if found is None else found[0]

    def offline_items(self) -> list[tuple[str, int, str, float]]:
        """(topic, partition, reason, since_s) of every offline partition."""
        self._load()
        return [(t, p, reason, since_s) for (t, p), (reason, since_s)
                in sorted(self._offline.items())]

    def take_offline(self, topic: str, partition: int, reason: str) -> bool:
        """Mark the partition offline (until the broker restarts); False if it already was."""
        def change(_closed, offline):
            offline.setdefault((topic, partition), (reason[:1000], time.time()))
        try:
            return self._update(change) > 0
        except ValueError:  # the block is full: the owner's own refusal still holds
            return False
