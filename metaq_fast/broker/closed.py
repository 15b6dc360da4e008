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
JSON only when it changed. Writers (any worker, the supervisor) serialise with a POSIX record
lock (``lockf``: owned per process, so forked workers exclude each other, which ``flock`` on the
one inherited descriptor would not) plus a thread lock. The generation is a sequence lock: a
writer makes it odd (one aligned 8-byte store), writes the length and the JSON, then makes it
even; a reader keeps what it copied only if the generation was the same even number before and
after reading the length and the copy (readers take no lock).
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import threading
import time

import numpy as np

BLOCK_BYTES = 256 * 1024
READ_TRIES = 1_000  # a write takes microseconds; a reader gives up only on a dead writer
HEADER_BYTES = 16  # generation, JSON length: two little-endian u64


class ClosedPartitions:
    def __init__(self):
        self._fd = os.memfd_create("metaq-closed-partitions")
        os.ftruncate(self._fd, BLOCK_BYTES)
        self._map = mmap.mmap(self._fd, BLOCK_BYTES)
        self._words = np.frombuffer(self._map, dtype="<u8", count=2)  # aligned 8-byte stores
        self._thread_lock = threading.Lock()
        self._seen = -1
        self._set: frozenset[tuple[str, int]] = frozenset()
        self._offline: dict[tuple[str, int], tuple[str, float]] = {}

    def _load(self) -> frozenset[tuple[str, int]]:
        words = self._words
        for _ in range(READ_TRIES):
            generation = int(words[0])
            if generation == self._seen:
                return self._set
            if generation % 2:
                continue  # a writer is at work
            length = int(words[1])
            raw = bytes(self._map[HEADER_BYTES : HEADER_BYTES + length]) if length else b"{}"
            if int(words[0]) != generation:
                continue  # written meanwhile: the copy may be torn
            try:
                state = json.loads(raw)
            except ValueError:  # torn after all (no barrier on a weakly ordered CPU): again
                continue
            self._set = frozenset((t, p) for t, p in state.get("closed", ()))
            self._offline = {(t, p): (reason, since_s)
                             for t, p, reason, since_s in state.get("offline", ())}
            self._seen = generation
            return self._set
        return self._set  # a writer died mid-write: the last view, until the next write

    def _changed(self) -> bool:
        """False while nothing was ever written (the common case: one 8-byte read)."""
        return int(self._words[0]) != 0 or self._seen > 0

    def __contains__(self, key: tuple[str, int]) -> bool:
        return self._changed() and key in self._load()

    def items(self) -> list[tuple[str, int]]:
        return sorted(self._load())

    def _update(self, change) -> int:
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                return self._write(change)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _write(self, change) -> int:
        words = self._words
        generation = int(words[0])
        if generation % 2:  # a writer died mid-write: its JSON may be torn, start from none
            self._set, self._offline = frozenset(), {}
            generation += 1
        else:
            self._seen = -1
            self._load()
        current = set(self._set)
        offline = dict(self._offline)
        before = len(current) + len(offline)
        change(current, offline)
        raw = json.dumps({"closed": sorted(current),
                          "offline": [[t, p, reason, since_s] for (t, p), (reason, since_s)
                                      in sorted(offline.items())]}).encode("utf-8")
        if HEADER_BYTES + len(raw) > BLOCK_BYTES:
            raise ValueError("too many closed or offline partitions")
        words[0] = generation + 1  # odd: being written
        words[1] = len(raw)
        self._map[HEADER_BYTES : HEADER_BYTES + len(raw)] = raw
        words[0] = generation + 2
        return len(current) + len(offline) - before

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
