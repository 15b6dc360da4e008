"""Self-checking benchmark payloads: how they are built, and how what was consumed is checked.

Imports: stdlib, numpy (no sockets, no kazoo): everything here is pure and unit-tested
(``tests/unit/test_bench_verify.py``).

Payload layout (little-endian), ``size`` bytes, ``size >= HEADER_BYTES``::

    0        8        16       24    28
    +--------+--------+--------+-----+---------------------------+
    | check  | seq    | sent   | run | filler (fixed or random)  |
    +--------+--------+--------+-----+---------------------------+

``check`` = ``payload_checks`` of bytes ``[8:size]`` (below); ``seq`` = producer index << 40 | the message's number
within that producer (0, 1, 2, ...); ``sent`` = CLOCK_MONOTONIC in ns when the producer built the
batch (system-wide on Linux, so a consumer process on the same machine subtracts it from its own
clock); ``run`` = a random 32-bit id of the run, so a record from an earlier run is "foreign",
not a duplicate.

Strategy: the consumer must keep up with the broker, so nothing is done one record at a time in
Python. The check is a hash numpy computes for a whole batch in a few array operations (a
per-record ``xxh3`` call, even through ``map``, took half of a consumer's time and capped it
below the broker's speed). Headers are gathered with one numpy fancy index per batch; each producer's sequence numbers are marked in a
bitmap (``seen``); deliveries minus distinct numbers are the duplicates, acknowledged numbers
absent from the merged bitmaps are the missing ones. Latencies go into a log-scale histogram
(100 bins per decade: percentiles within 2.3%), which merges across processes by addition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

HEADER_BYTES = 28
SEQ_BITS = 40  # messages per producer < 2**40
SEQ_MASK = (1 << SEQ_BITS) - 1
PRODUCERS_MAX = 1 << 16
RECORD_HEADER_BYTES = 20  # MetaQ's record header before each payload (message.HEADER_BYTES)
FILLER = b"metaq-bench filler "
RANDOM_POOL_BYTES = 4 << 20
RANDOM_STRIDE_BYTES = 61  # consecutive random payloads start this far apart in the pool

_MIX = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's multipliers: odd, well mixed
_SHIFT_A, _SHIFT_B = np.uint64(30), np.uint64(27)


def _lane_keys(count: int) -> np.ndarray:
    """``count`` fixed, distinct, odd 64-bit keys (splitmix64 of 1, 2, ...), one per 8-byte lane."""
    z = np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _SHIFT_A)) * _MIX
    z = (z ^ (z >> _SHIFT_B)) * np.uint64(0x94D049BB133111EB)
    return z | np.uint64(1)


_KEYS = _lane_keys(1 << 14)  # payloads up to 128 KiB without regrowing


def payload_checks(rows: np.ndarray) -> np.ndarray:
    """A 64-bit check of each row of ``rows`` (a (count, n) uint8 array, any strides), for a
    whole batch in a few array operations.

    The row, zero-padded to whole 8-byte lanes, is read as little-endian words ``w_j``; the check
    is ``sum(w_j * k_j) mod 2**64`` with odd keys ``k_j``, then mixed (xorshift and odd multiply,
    both bijections). A change confined to one lane changes ``w_j`` by some ``d != 0`` and the
    sum by ``k_j * d``, never 0 mod 2**64 since ``k_j`` is odd: it is always caught. Changes in
    several lanes escape with probability about 2**-64. The length is mixed in too.
    """
    return _finish(_lane_sums(rows), rows.shape[1])


def _keys(lanes: int) -> np.ndarray:
    global _KEYS
    if lanes > len(_KEYS):
        _KEYS = _lane_keys(lanes)
    return _KEYS[:lanes]


def _lane_sums(rows: np.ndarray) -> np.ndarray:
    """``sum(w_j * k_j) mod 2**64`` of each row (the linear part of the check)."""
    count, n = rows.shape
    lanes = (n + 7) // 8
    padded = np.empty((count, lanes * 8), dtype=np.uint8)
    padded[:, :n] = rows
    padded[:, n:] = 0
    # one pass, no (count, lanes) temporary; integer einsum wraps mod 2**64 like the scalar sum
    return np.einsum("ij,j->i", padded.view("<u8"), _keys(lanes))


def _finish(h: np.ndarray, n: int) -> np.ndarray:
    h += np.uint64(n)
    h ^= h >> _SHIFT_A
    h *= _MIX
    h ^= h >> _SHIFT_B
    return h


def payload_check(data) -> int:
    """``payload_checks`` of one buffer."""
    return int(payload_checks(np.frombuffer(data, dtype=np.uint8).reshape(1, -1))[0])


class PayloadFactory:
    """Builds batches of payloads for one producer; ``make`` returns a (count, size) array."""

    def __init__(self, size: int, run_id: int, producer: int, random_payload: bool = False,
                 seed: int | None = None):
        if size < HEADER_BYTES:
            raise ValueError(f"payload size must be at least {HEADER_BYTES} bytes (the self-check "
                             f"header), got {size}")
        if not 0 <= producer < PRODUCERS_MAX:
            raise ValueError(f"producer index must be 0..{PRODUCERS_MAX - 1}, got {producer}")
        self.size = size
        self.run_id = run_id & 0xFFFFFFFF
        self.producer = producer
        self.random_payload = random_payload
        self.rng = np.random.default_rng(seed)
        filler_bytes = size - HEADER_BYTES
        if random_payload:
            self.pool = self.rng.integers(0, 256, RANDOM_POOL_BYTES + filler_bytes, dtype=np.uint8)
        else:
            reps = filler_bytes // len(FILLER) + 1
            self.filler = np.frombuffer((FILLER * reps)[:filler_bytes], dtype=np.uint8)
            # The check is linear in the 8-byte lanes of bytes [8:size]: lane 0 is the sequence
            # number, lane 1 the send time, the rest (run id and filler) is the same for every
            # message, so its share is summed once here and make() adds two products per row.
            template = np.zeros((1, size), dtype=np.uint8)
            template[0, 24:28] = np.frombuffer(self.run_id.to_bytes(4, "little"), dtype=np.uint8)
            template[0, HEADER_BYTES:] = self.filler
            self._constant_sum = _lane_sums(template[:, 8:])[0]
            self._seq_key, self._sent_key = _keys(2)

    def make(self, first: int, count: int, sent_ns: int) -> np.ndarray:
        """Payloads number ``first .. first+count-1`` of this producer, stamped ``sent_ns``."""
        size = self.size
        out = np.empty((count, size), dtype=np.uint8)
        if self.random_payload:
            span = RANDOM_STRIDE_BYTES * count
            if span > RANDOM_POOL_BYTES:  # very large batches: gather instead of a strided view
                starts = self.rng.integers(0, RANDOM_POOL_BYTES, count)
                out[:, HEADER_BYTES:] = self.pool[starts[:, None] + np.arange(size - HEADER_BYTES)]
            else:
                start = int(self.rng.integers(0, RANDOM_POOL_BYTES - span + 1))
                out[:, HEADER_BYTES:] = np.lib.stride_tricks.as_strided(
                    self.pool[start:], shape=(count, size - HEADER_BYTES),
                    strides=(RANDOM_STRIDE_BYTES, 1), writeable=False)
        else:
            out[:, HEADER_BYTES:] = self.filler
        seqs = (np.uint64(self.producer) << np.uint64(SEQ_BITS)) + np.arange(
            first, first + count, dtype=np.uint64)
        out[:, 8:16] = seqs.astype("<u8").view(np.uint8).reshape(count, 8)
        out[:, 16:24] = np.frombuffer(int(sent_ns).to_bytes(8, "little"), dtype=np.uint8)
        out[:, 24:28] = np.frombuffer(self.run_id.to_bytes(4, "little"), dtype=np.uint8)
        if self.random_payload:
            checks = payload_checks(out[:, 8:])
        else:
            checks = seqs * self._seq_key
            # scalars in Python ints: numpy warns when a scalar (not an array) wraps
            checks += np.uint64((sent_ns * int(self._sent_key) + int(self._constant_sum))
                                & 0xFFFFFFFFFFFFFFFF)
            checks = _finish(checks, size - 8)
        out[:, 0:8] = checks.astype("<u8").view(np.uint8).reshape(count, 8)
        return out

    def payloads(self, first: int, count: int, sent_ns: int) -> list[bytes]:
        """``make`` as a list of ``bytes`` (what ``Producer.send_batch`` takes)."""
        return self.split(self.make(first, count, sent_ns))

    @staticmethod
    def split(batch: np.ndarray) -> list[bytes]:
        """One ``bytes`` per row of a ``make`` result."""
        count, size = batch.shape
        raw = batch.tobytes()
        return list(map(raw.__getitem__, _slices(count, size, 0)))


_SLICES: dict[tuple[int, int, int], list[slice]] = {}


def _slices(count: int, size: int, skip: int) -> list[slice]:
    """``[slice(i*size + skip, (i+1)*size) for i in range(count)]``, cached."""
    key = (count, size, skip)
    found = _SLICES.get(key)
    if found is None:
        if len(_SLICES) > 64:
            _SLICES.clear()
        found = _SLICES[key] = list(map(slice, range(skip, count * size, size),
                                        range(size, count * size + 1, size)))
    return found


class LatencyHistogram:
    """Log-scale histogram of latencies in microseconds: ``BINS_PER_DECADE`` bins per factor of
    ten from ``LOW_US``; exact count, sum, min and max on the side."""

    LOW_US = 1.0
    BINS_PER_DECADE = 100
    DECADES = 8  # 1 us .. 100 s

    def __init__(self):
        self.counts = np.zeros(self.BINS_PER_DECADE * self.DECADES + 1, dtype=np.int64)
        self.total = 0
        self.sum_us = 0.0
        self.min_us = math.inf
        self.max_us = 0.0

    def add_one_ns(self, latency_ns: int, weight: int = 1) -> None:
        """``add_ns`` of one latency, in plain Python (a producer adds one per batch; numpy's
        per-call cost would be most of the work)."""
        us = max(latency_ns / 1000.0, 0.0)
        index = int(math.floor(math.log10(max(us, self.LOW_US) / self.LOW_US) * self.BINS_PER_DECADE))
        self.counts[min(index, len(self.counts) - 1)] += weight
        self.total += weight
        self.sum_us += us * weight
        self.min_us = min(self.min_us, us)
        self.max_us = max(self.max_us, us)

    def add_ns(self, latencies_ns: np.ndarray, weight: int = 1) -> None:
        if not len(latencies_ns):
            return
        us = np.maximum(np.asarray(latencies_ns, dtype=np.float64) / 1000.0, 0.0)
        index = np.floor(np.log10(np.maximum(us, self.LOW_US) / self.LOW_US) * self.BINS_PER_DECADE)
        index = np.minimum(index.astype(np.int64), len(self.counts) - 1)
        self.counts += np.bincount(index, minlength=len(self.counts)) * weight
        self.total += len(us) * weight
        self.sum_us += float(us.sum()) * weight
        self.min_us = min(self.min_us, float(us.min()))
        self.max_us = max(self.max_us, float(us.max()))

    def merge(self, other: "LatencyHistogram") -> None:
        self.counts += other.counts
        self.total += other.total
        self.sum_us += other.sum_us
        self.min_us = min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)

    def edges_us(self) -> np.ndarray:
        """Bin edges (len(counts) + 1); the last bin is open-ended (its upper edge = max seen)."""
        edges = self.LOW_US * 10 ** (np.arange(len(self.counts) + 1) / self.BINS_PER_DECADE)
        edges[0] = 0.0
        edges[-1] = max(edges[-2], self.max_us)
        return edges

    def percentile_us(self, q: float) -> float:
        """Upper edge of the bin holding the ``q``-th percentile (capped at the exact max)."""
        if not self.total:
            return math.nan
        rank = max(1, math.ceil(self.total * q / 100.0))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        upper = self.LOW_US * 10 ** ((i + 1) / self.BINS_PER_DECADE)
        return min(upper, self.max_us)

    def summary_ms(self) -> dict:
        if not self.total:
            return {"count": 0}
        out = {"count": int(self.total), "mean": self.sum_us / self.total / 1000.0,
               "min": self.min_us / 1000.0}
        for name, q in PERCENTILES:
            out[name] = self.percentile_us(q) / 1000.0
        out["max"] = self.max_us / 1000.0
        return out

    def to_json(self) -> dict:
        nonzero = np.flatnonzero(self.counts)
        return {"low_us": self.LOW_US, "bins_per_decade": self.BINS_PER_DECADE,
                "bins": nonzero.tolist(), "counts": self.counts[nonzero].tolist()}

    @classmethod
    def from_json(cls, data: dict, summary: dict | None = None) -> "LatencyHistogram":
        hist = cls()
        hist.counts[np.asarray(data.get("bins", []), dtype=np.int64)] = data.get("counts", [])
        hist.total = int(hist.counts.sum())
        if summary and summary.get("count"):
            hist.max_us = summary["max"] * 1000.0
            hist.min_us = summary["min"] * 1000.0
            hist.sum_us = summary["mean"] * 1000.0 * hist.total
        return hist


PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


class Samples:
    """Message counts per time bucket since a start time (``interval_s`` wide buckets)."""

    def __init__(self, t0_ns: int, interval_s: float = 0.1):
        self.t0_ns = t0_ns
        self.interval_ns = int(interval_s * 1e9)
        self.counts = np.zeros(64, dtype=np.int64)

    def add(self, now_ns: int, count: int) -> None:
        i = max(0, (now_ns - self.t0_ns) // self.interval_ns)
        if i >= len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(max(i + 1, 2 * len(self.counts))
                                                                - len(self.counts), np.int64)])
        self.counts[i] += count

    def trimmed(self) -> np.ndarray:
        nz = np.flatnonzero(self.counts)
        return self.counts[: nz[-1] + 1] if len(nz) else self.counts[:0]


@dataclass
class ConsumedState:
    """What one consumer process saw. Bitmaps are per producer index, one byte per number."""

    seen: dict[int, np.ndarray] = field(default_factory=dict)
    deliveries: int = 0  # valid records of this run, duplicates included
    unique: int = 0  # distinct numbers (this process only)
    corrupt: int = 0  # check mismatch, wrong length, impossible producer index
    foreign: int = 0  # intact records of another run
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    corrupt_examples: list = field(default_factory=list)


class Verifier:
    """Checks consumed records (see the module docstring) and measures their latency."""

    EXAMPLES_MAX = 5

    def __init__(self, size: int, run_id: int, producers: int, expected_per_producer=None,
                 t0_ns: int = 0, interval_s: float = 0.1):
        self.size = size
        self.run_id = run_id & 0xFFFFFFFF
        self.producers = producers
        self.state = ConsumedState()
        for p in range(producers):
            n = int(expected_per_producer[p]) if expected_per_producer is not None else 1 << 16
            self.state.seen[p] = np.zeros(max(n, 1), dtype=np.uint8)
        self.latency = LatencyHistogram()
        self.samples = Samples(t0_ns, interval_s)

    def add(self, buf, positions: np.ndarray, lengths: np.ndarray, now_ns: int,
            where: tuple[str, int] | None = None) -> int:
        """Check the records of a decoded message set (``buf``, record ``positions`` and data
        ``lengths`` as in ``MessageSet``); returns how many were new and valid. ``where``
        (partition, offset of ``buf[0]``) only names the place of a bad record."""
        st = self.state
        count = len(positions)
        if not count:
            return 0
        positions = np.asarray(positions, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        starts = positions + RECORD_HEADER_BYTES
        sized = lengths == self.size
        if not sized.all():
            self._odd_sizes(buf, starts[~sized], lengths[~sized], where)
            starts = starts[sized]
            if not len(starts):
                return 0
        arr = np.frombuffer(buf, dtype=np.uint8)
        stride = int(starts[1] - starts[0]) if len(starts) > 1 else 0
        if stride >= self.size and (np.diff(starts) == stride).all():
            # records back to back (the usual case): a strided view, no gather
            rows = np.ndarray((len(starts), self.size), dtype=np.uint8, buffer=arr,
                              offset=int(starts[0]), strides=(stride, 1))
        else:
            rows = arr[starts[:, None] + np.arange(self.size, dtype=np.int64)]
        head = rows[:, :HEADER_BYTES]
        fields = np.ascontiguousarray(head[:, :24]).view("<u8")
        runs = np.ascontiguousarray(head[:, 24:28]).view("<u4").ravel()
        actual = payload_checks(rows[:, 8:])
        intact = actual == fields[:, 0]
        ours = intact & (runs == self.run_id)
        st.foreign += int((intact & ~ours).sum())
        bad = np.flatnonzero(~intact)
        if len(bad):
            st.corrupt += len(bad)
            self._example("check mismatch", int(starts[bad[0]]) - RECORD_HEADER_BYTES, where)
        seqs = fields[ours, 1]
        producer = (seqs >> np.uint64(SEQ_BITS)).astype(np.int64)
        number = (seqs & np.uint64(SEQ_MASK)).astype(np.int64)
        impossible = producer >= self.producers
        if impossible.any():
            st.corrupt += int(impossible.sum())
            self._example(f"intact record names producer {int(producer[impossible][0])} of "
                          f"{self.producers}")
            producer, number = producer[~impossible], number[~impossible]
            sent = fields[ours, 2][~impossible]
        else:
            sent = fields[ours, 2]
        new = 0
        if not len(producer):
            groups = []
        elif producer[0] == producer[-1] and (producer == producer[0]).all():
            groups = [(int(producer[0]), number)]
        else:
            groups = [(p, number[producer == p]) for p in np.unique(producer).tolist()]
        for p, distinct in groups:
            if len(distinct) > 1 and not (distinct[1:] > distinct[:-1]).all():
                distinct = np.unique(distinct)  # out of order or repeated within the batch
            bitmap = st.seen.get(p)
            top = int(distinct.max())
            if bitmap is None or top >= len(bitmap):
                old = bitmap if bitmap is not None else np.zeros(0, dtype=np.uint8)
                bitmap = np.zeros(max(top + 1, 2 * len(old)), dtype=np.uint8)
                bitmap[: len(old)] = old
                st.seen[p] = bitmap
            new += len(distinct) - int(np.count_nonzero(bitmap[distinct]))
            bitmap[distinct] = 1
        delivered = len(sent)
        st.deliveries += delivered
        st.unique += new
        st.bytes += delivered * self.size
        if delivered:
            if not st.first_ns:
                st.first_ns = now_ns
            st.last_ns = now_ns
            self.latency.add_ns(now_ns - sent.astype(np.int64))
            self.samples.add(now_ns, delivered)
        return new

    def _odd_sizes(self, buf, starts: np.ndarray, lengths: np.ndarray, where) -> None:
        """Records whose length is not the run's size: another run's (if intact) or corrupt."""
        view = memoryview(buf).cast("B")
        for start, length in zip(starts.tolist(), lengths.tolist()):
            if length >= HEADER_BYTES:
                data = view[start : start + length]
                check = int.from_bytes(data[0:8], "little")
                run = int.from_bytes(data[24:28], "little")
                if payload_check(data[8:]) == check and run != self.run_id:
                    self.state.foreign += 1
                    continue
            self.state.corrupt += 1
            self._example(f"record of {length} bytes, expected {self.size},",
                          start - RECORD_HEADER_BYTES, where)

    def _example(self, text: str, position: int | None = None, where=None) -> None:
        if len(self.state.corrupt_examples) >= self.EXAMPLES_MAX:
            return
        if position is not None:
            text += (f" at partition {where[0]} offset {where[1] + position}" if where
                     else f" at buffer position {position}")
        self.state.corrupt_examples.append(text)


@dataclass
class Verdict:
    acked: int
    failed: int  # sends that were not acknowledged (error reported to the producer)
    delivered: int  # valid deliveries (duplicates included)
    unique: int
    missing: int  # acknowledged, never consumed
    duplicates: int  # deliveries beyond the first of a number
    corrupt: int
    foreign: int
    unacked_delivered: int  # consumed although its send failed (allowed: at-least-once)
    phantom: int  # numbers never sent at all
    examples: list

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.corrupt or self.phantom or self.failed)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("acked", "failed", "delivered", "unique", "missing",
                                             "duplicates", "corrupt", "foreign",
                                             "unacked_delivered", "phantom")}
        out["ok"] = self.ok
        out["examples"] = list(self.examples)
        return out


def verdict(sent: dict[int, int], failed: dict[int, np.ndarray], states: list[ConsumedState]) -> Verdict:
    """Merge what the consumers saw and compare with what the producers sent.

    ``sent[p]``: how many numbers producer ``p`` used (0..n-1); ``failed[p]``: a bool array
    (length ``sent[p]``) of the numbers whose send failed, or absent when none did.
    """
    acked = missing = failed_total = unique = unacked = phantom = 0
    producers = set(sent) | {p for s in states for p in s.seen}
    for p in sorted(producers):
        n = int(sent.get(p, 0))
        merged = np.zeros(n, dtype=bool)
        for s in states:
            bitmap = s.seen.get(p)
            if bitmap is None:
                continue
            nz = np.flatnonzero(bitmap)
            phantom += int((nz >= n).sum())
            merged[nz[nz < n]] = True
        bad = failed.get(p)
        bad = np.zeros(n, dtype=bool) if bad is None else np.asarray(bad, dtype=bool)[:n]
        failed_total += int(bad.sum())
        acked += n - int(bad.sum())
        missing += int((~merged & ~bad).sum())
        unacked += int((merged & bad).sum())
        unique += int(merged.sum())
    delivered = sum(s.deliveries for s in states)
    return Verdict(acked=acked, failed=failed_total, delivered=delivered, unique=unique,
                   missing=missing, duplicates=delivered - unique - phantom if delivered else 0,
                   corrupt=sum(s.corrupt for s in states),
                   foreign=sum(s.foreign for s in states), unacked_delivered=unacked,
                   phantom=phantom,
                   examples=[e for s in states for e in s.corrupt_examples][:10])
