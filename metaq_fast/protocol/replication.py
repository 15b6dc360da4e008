"""The replication fetch: a slave's request for its master's new records, and the answer.

Allowed imports: stdlib, xxhash, ``metaq_fast.errors`` / ``limits`` and the protocol modules.
Sans-IO: bytes in, values out, and back.

A slave worker sends one ``replicate`` request to each worker of its master, listing the
partitions it replicates from that worker with the offset it has reached (MetaQ's slave used
``get`` per partition; one request for many partitions lets the master hold it until any of
them has news, Kafka's long-poll fetch, and learn every follower's position at once)::

    replicate <replica> <epoch> <slot> <slots> <maxWaitMs> <maxBytes> <length> <opaque>\\r\\n
    <length> bytes: "<topic> <partition> <offset> <lastEpoch> <segmentStart>\\n" per partition

* ``replica``: who asks, ``m`` (the broker id's configured master, when it follows) or
  ``s<slaveId>``; ``epoch``: the master epoch the slave follows (0: none yet).
* ``slot``/``slots``: the asking worker and its broker's worker count: the master adds the
  partitions it owns that fall to that worker (``layout.owner_of``) and that the request did
  not list, from their first offset (a new partition reaches the slave by itself).
* ``offset``: where the slave's copy ends (all before it is in its mapping; in group commit,
  flushed): the master counts it as replicated up to there. ``lastEpoch``: the epoch of the
  slave's last record there (KIP-320: the master says if the slave diverged).
  ``segmentStart``: the start of the slave's active segment (the master tells it when it began
  a new one, so the slave's files stay the master's even before records arrive there).

The answer is ``result 200 <length> <opaque>`` whose body holds one entry per partition with
news (an error for the whole request is a plain ``result`` with another code)::

    data <topic> <partition> <offset> <segmentStart> <epoch> <logEnd> <length> <xxh3>\\n + bytes
    diverged <topic> <partition> <epoch> <endOffset>\\n
    reset <topic> <partition> <firstOffset> <epoch>\\n
    missing <topic> <partition>\\n
    failed <topic> <partition> <reason...>\\n

``data``: whole records from ``offset``, all from the master's segment starting at
``segmentStart`` and written in master ``epoch``; ``logEnd`` is the master's end (the slave's lag
is the difference); an empty ``data`` entry tells of a segment the master has just begun.
``diverged``: the slave's records past ``endOffset`` (the end of ``epoch`` on the master) are not
the master's: cut back to the smaller of it and the slave's own end of that epoch. ``reset``: the
master no longer has the slave's offset (retention), or the slave lacks the partition: start
again, empty, at ``firstOffset``, whose records are ``epoch``'s.
``missing``: no such partition on the master. ``failed``: the master could not read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import xxhash

from metaq_fast.errors import InvalidArgumentError, ProtocolError

__all__ = [
    "FetchPosition",
    "ReplicaEntry",
    "ReplicateCommand",
    "encode_replica_entries",
    "encode_replicate",
    "parse_fetch_positions",
    "parse_replica_entries",
    "replica_name",
]

_REPLICA_NAME = re.compile(r"m|s(0|[1-9][0-9]{0,8})\Z")
_TOKEN = re.compile(rb"[!-~]+\Z")  # printable ASCII without space


def replica_name(slave_id: int | None) -> str:
    """``m`` for a broker id's configured master, ``s<slaveId>`` for a slave."""
    return "m" if slave_id is None else f"s{slave_id}"


def _check_replica(name: str) -> str:
    if not isinstance(name, str) or not _REPLICA_NAME.fullmatch(name):
        raise InvalidArgumentError(f"bad replica name {name!r}, expected m or s<slaveId>")
    return name


@dataclass(frozen=True, slots=True)
class FetchPosition:
    """One partition of a ``replicate`` request."""

    topic: str
    partition: int
    offset: int
    last_epoch: int
    segment_start: int = 0


@dataclass(frozen=True, slots=True)
class ReplicateCommand:
    replica: str
    epoch: int
    slot: int
    slots: int
    max_wait_ms: int
    max_bytes: int
    body: bytes
    opaque: int

    def __post_init__(self) -> None:
        _check_replica(self.replica)
        if not (0 <= self.slot < self.slots) or self.epoch < 0 or self.max_wait_ms < 0 \
                or self.max_bytes <= 0:
            raise InvalidArgumentError(f"bad replicate request {self!r}")

    def positions(self) -> list[FetchPosition]:
        return parse_fetch_positions(self.body)


def encode_fetch_positions(positions) -> bytes:
    return b"".join(b"%s %d %d %d %d\n" % (p.topic.encode(), p.partition, p.offset,
                                            p.last_epoch, p.segment_start) for p in positions)


def encode_replicate(replica: str, epoch: int, slot: int, slots: int, max_wait_ms: int,
                     max_bytes: int, positions, opaque: int) -> bytes:
    body = encode_fetch_positions(positions)
    ReplicateCommand(replica, epoch, slot, slots, max_wait_ms, max_bytes, body, opaque)
    return b"replicate %s %d %d %d %d %d %d %d\r\n" % (
        replica.encode(), epoch, slot, slots, max_wait_ms, max_bytes, len(body), opaque) + body


def _bad(what: str) -> ProtocolError:
    return ProtocolError(what[:300])


def _nonneg(token: bytes, what: str) -> int:
    if not token.isdigit() or len(token) > 20:
        raise _bad(f"bad {what} {token[:32]!r} in a replication frame")
    return int(token)


def parse_replicate_line(toks: list[bytes]) -> tuple:
    """The fields of a ``replicate`` line after the verb (the decoder reads the body):
    (replica, epoch, slot, slots, maxWaitMs, maxBytes, length, opaque)."""
    if len(toks) != 9:
        raise _bad(f"replicate needs 9 tokens, got {len(toks)}")
    replica = toks[1].decode("ascii", "replace")
    if not _REPLICA_NAME.fullmatch(replica):
        raise _bad(f"bad replica name {toks[1][:32]!r} in replicate")
    numbers = [_nonneg(t, what) for t, what in zip(
        toks[2:8], ("epoch", "slot", "slots", "maxWaitMs", "maxBytes", "length"))]
    opaque = toks[8]
    if not re.fullmatch(rb"-?[0-9]{1,10}", opaque):
        raise _bad(f"bad opaque {opaque[:32]!r} in replicate")
    epoch, slot, slots, max_wait_ms, max_bytes, length = numbers
    if not slot < slots or max_bytes <= 0:
        raise _bad(f"bad slot {slot} of {slots} or maxBytes {max_bytes} in replicate")
    return replica, epoch, slot, slots, max_wait_ms, max_bytes, length, int(opaque)


def parse_fetch_positions(body) -> list[FetchPosition]:
    out = []
    for line in bytes(body).split(b"\n"):
        if not line:
            continue
        parts = line.split(b" ")
        if len(parts) != 5 or not _TOKEN.fullmatch(parts[0]):
            raise _bad(f"bad replicate entry {line[:64]!r}")
        partition, offset, last_epoch, segment_start = (_nonneg(p, "number") for p in parts[1:])
        out.append(FetchPosition(parts[0].decode("ascii"), partition, offset, last_epoch,
                                 segment_start))
    return out


# ---- the answer ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaEntry:
    """One entry of the answer (module docstring); fields unused by a kind are 0 / empty."""

    kind: str  # data | diverged | reset | missing | failed
    topic: str
    partition: int
    offset: int = 0  # data: where the records start; diverged: endOffset; reset: firstOffset
    segment_start: int = 0
    epoch: int = 0
    log_end: int = 0
    data: bytes | memoryview = b""
    reason: str = ""


def encode_replica_entries(entries) -> list:
    """The answer body as buffers to send as they are (records are not copied)."""
    out: list = []
    for e in entries:
        head = b"%s %s %d" % (e.kind.encode(), e.topic.encode(), e.partition)
        if e.kind == "data":
            out.append(head + b" %d %d %d %d %d %d\n" % (
                e.offset, e.segment_start, e.epoch, e.log_end, len(e.data),
                xxhash.xxh3_64_intdigest(e.data)))
            if len(e.data):
                out.append(e.data)
        elif e.kind == "diverged":
            out.append(head + b" %d %d\n" % (e.epoch, e.offset))
        elif e.kind == "reset":
            out.append(head + b" %d %d\n" % (e.offset, e.epoch))
        elif e.kind == "missing":
            out.append(head + b"\n")
        elif e.kind == "failed":
            reason = " ".join(e.reason.split()).encode("utf-8", "replace") or b"-"
            out.append(head + b" " + reason + b"\n")
        else:
            raise InvalidArgumentError(f"unknown replica entry kind {e.kind!r}")
    return out


_FIELDS = {"data": 9, "diverged": 5, "reset": 5, "missing": 3}


def parse_replica_entries(body) -> list[ReplicaEntry]:
    """The entries of an answer body; ``ProtocolError`` for anything malformed, a ``data``
    entry whose bytes fail their xxh3 included."""
    view = memoryview(body).cast("B")
    raw = bytes(view) if not isinstance(body, bytes) else body
    out, pos, end = [], 0, len(view)
    while pos < end:
        nl = raw.find(b"\n", pos, min(end, pos + 1024))
        if nl < 0:
            raise _bad(f"replica entry without end of line at {pos}")
        line = raw[pos:nl]
        parts = line.split(b" ")
        kind = parts[0].decode("ascii", "replace")
        pos = nl + 1
        if kind == "failed" and len(parts) >= 4:
            out.append(ReplicaEntry(kind, parts[1].decode("ascii", "replace"),
                                    _nonneg(parts[2], "partition"),
                                    reason=b" ".join(parts[3:]).decode("utf-8", "replace")))
            continue
        if _FIELDS.get(kind) != len(parts) or not _TOKEN.fullmatch(parts[1]):
            raise _bad(f"bad replica entry {line[:80]!r}")
        topic = parts[1].decode("ascii")
        numbers = [_nonneg(p, "number") for p in parts[2:]]
        if kind == "data":
            partition, offset, segment_start, epoch, log_end, length, digest = numbers
            if pos + length > end:
                raise _bad(f"replica data of {length} bytes runs past the answer")
            data = view[pos:pos + length]
            pos += length
            if xxhash.xxh3_64_intdigest(data) != digest:
                raise _bad(f"replica data of {topic}-{partition} at {offset} fails its checksum")
            out.append(ReplicaEntry(kind, topic, partition, offset, segment_start, epoch,
                                    log_end, data))
        elif kind == "diverged":
            out.append(ReplicaEntry(kind, topic, numbers[0], offset=numbers[2], epoch=numbers[1]))
        elif kind == "reset":
            out.append(ReplicaEntry(kind, topic, numbers[0], offset=numbers[1], epoch=numbers[2]))
        else:
            out.append(ReplicaEntry(kind, topic, numbers[0]))
    return out
