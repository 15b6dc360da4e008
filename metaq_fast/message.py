"""MetaQ's record and message-set layout, encoded and decoded a whole batch at a time.

Imports: numpy, xxhash, isal (or zlib), and metaq_fast.errors / limits only.

Record layout (big-endian, MetaQ MessageUtils), the same on disk and inside a ``get`` answer::

    0        4        8                16       20
    +--------+--------+----------------+--------+--------------------+
    | length | crc    | msg_id         | flag   | data (length bytes)|
    +--------+--------+----------------+--------+--------------------+

``crc = crc32(data) & 0x7FFFFFFF``. If ``flag & 1``, data = ``attrLen:int32 | attribute (UTF-8) |
payload``; otherwise data = payload. A message set is records back to back.

Strategy: the per-record cost is what limits a Python broker, so every function here takes
whole batches. Lengths, ids, flags and checksums live in numpy arrays; headers are written and
read through a structured dtype; only the CRC itself is one C call per record (ISA-L's crc32 when
available: about 2.5x faster per call than zlib's on 100-byte records). Finding record boundaries
in a buffer without an index is inherently sequential; ``scan_positions`` walks it, and switches
to a vectorised stride check whenever consecutive records have equal sizes (the common case).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .errors import CorruptRecordError, InvalidArgumentError
from .limits import CLIENT_RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES

try:  # ISA-L: same CRC-32 (IEEE, reflected) as zlib, much less per-call overhead.
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - isal has wheels for x86_64 and aarch64
    from zlib import crc32 as _crc32

HEADER_BYTES = RECORD_HEADER_BYTES
HEADER_DTYPE = np.dtype([("length", ">i4"), ("crc", ">i4"), ("msg_id", ">i8"), ("flag", ">i4")])
assert HEADER_DTYPE.itemsize == HEADER_BYTES

FLAG_ATTRIBUTE = 1
CRC_MASK = 0x7FFFFFFF
NO_CHECKSUM = -1

_LENGTH = struct.Struct(">i")
_HEADER = struct.Struct(">iiqi")
_ATTR_LEN = struct.Struct(">i")


# ---- checksums -------------------------------------------------------------------------------


def crc32(data) -> int:
    """MetaQ's record checksum: CRC-32 (java.util.zip.CRC32) masked to 31 bits."""
    return _crc32(data) & CRC_MASK


def crc32_many(datas: Sequence) -> np.ndarray:
    """Masked CRC-32 of each buffer, as an int32 array (one C call per buffer, no Python loop)."""
    crcs = np.fromiter(map(_crc32, datas), dtype=np.uint32, count=len(datas))
    crcs &= np.uint32(CRC_MASK)
    return crcs.view(np.int32)


# Odd 64-bit constants of XXH64 (PRIME64_1, PRIME64_2).
_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_SHIFT32 = np.uint64(32)
_HIGH_HALF = 1 if sys.byteorder == "little" else 0  # which uint32 of a native uint64 is the high one


def header_checks(msg_ids: np.ndarray, flags) -> np.ndarray:
    """A 32-bit check of each record's ``msg_id`` and ``flag``, vectorised.

    MetaQ's CRC covers a record's data only. The storage index keeps this check beside each
    record's position so that damage to an id or flag is pinned to its record, not just to its
    batch, without hashing records one by one. It is the high half of
    ``id * P1 ^ flag * P2`` (mod 2**64): multiplication by an odd constant is a bijection that
    carries every changed bit upwards, so any change confined to one field always changes it,
    and a random change of both fields escapes it with probability 2**-32.
    """
    # Array arithmetic on uint64 wraps silently (numpy warns on overflow for scalars only).
    h = np.atleast_1d(np.asarray(msg_ids, dtype=np.int64)).view(np.uint64) * _P1
    if np.ndim(flags):
        flags = np.asarray(flags)
        # flags are almost always 0: skip two array operations then (count_nonzero: 1.3 us on
        # a strided big-endian field, where .any() byte-swaps a copy first: 4.8 us)
        if np.count_nonzero(flags):
            h ^= flags.astype(np.uint64) * _P2
    elif flags:
        h ^= np.uint64((flags * int(_P2)) & 0xFFFFFFFFFFFFFFFF)  # Python ints: no overflow warning
    # the high 32 bits: a strided view instead of a shift and a cast (one copy by the caller)
    return h.view(np.uint32)[_HIGH_HALF::2]


_P1_INT, _P2_INT, _MASK64 = int(_P1), int(_P2), (1 << 64) - 1


def header_check(msg_id: int, flag: int) -> int:
    """``header_checks`` for one record, in plain Python (no numpy call overhead)."""
    return (((msg_id & _MASK64) * _P1_INT ^ (flag & _MASK64) * _P2_INT) & _MASK64) >> 32


def lay_out_records(dst: np.ndarray, datas: Sequence, positions: np.ndarray, uniform: bool,
                    lengths, crcs, msg_ids, flags) -> None:
    """Write whole records for ``datas`` into ``dst`` (a uint8 array of exactly their size),
    with one copy of the payload bytes: straight into a mapping, with no staging buffer."""
    count = len(datas)
    headers = build_headers(lengths, crcs, msg_ids, flags)
    if uniform:
        stride = len(dst) // count
        rows = dst.reshape(count, stride)
        rows[:, :HEADER_BYTES] = headers.view(np.uint8).reshape(count, HEADER_BYTES)
        if stride > HEADER_BYTES:
            rows[:, HEADER_BYTES:] = np.frombuffer(b"".join(datas), dtype=np.uint8).reshape(count, -1)
        return
    dst[:] = np.frombuffer(encode_records(datas, msg_ids, flags, crcs, lengths, False), dtype=np.uint8)


# ---- encoding -----------------------------------------------------------------------------


def encode_data(payload: bytes, attribute: str | None = None) -> tuple[bytes, int]:
    """The data block of one message and the flag bit it needs.

    With an attribute, data = ``attrLen:int32 | attribute UTF-8 | payload`` and flag bit 0 is set
    (an empty attribute is kept: ``00 00 00 00`` with the bit set, as MetaQ does).
    """
    if attribute is None:
        return bytes(payload), 0
    attr = attribute.encode("utf-8")
    return _ATTR_LEN.pack(len(attr)) + attr + bytes(payload), FLAG_ATTRIBUTE


def split_data(data, flag: int) -> tuple[str | None, memoryview]:
    """Inverse of ``encode_data``: (attribute or None, payload view)."""
    view = memoryview(data)
    if not flag & FLAG_ATTRIBUTE:
        return None, view
    if len(view) < 4:
        raise InvalidArgumentError(f"attribute flag set but data has only {len(view)} bytes")
    (attr_len,) = _ATTR_LEN.unpack_from(view, 0)
    if attr_len < 0 or 4 + attr_len > len(view):
        raise InvalidArgumentError(f"attribute length {attr_len} outside data of {len(view)} bytes")
    return bytes(view[4 : 4 + attr_len]).decode("utf-8", "replace"), view[4 + attr_len :]


def lengths_of(datas: Sequence) -> np.ndarray:
    """Byte length of each buffer as an int64 array."""
    return np.fromiter(map(len, datas), dtype=np.int64, count=len(datas))


def record_sizes(lengths: np.ndarray) -> np.ndarray:
    return lengths + HEADER_BYTES


def positions_from_lengths(lengths: np.ndarray, start: int = 0) -> np.ndarray:
    """Start of each record in a message set whose data lengths are ``lengths``."""
    positions = np.empty(len(lengths), dtype=np.int64)
    if len(lengths):
        positions[0] = start
        np.cumsum(lengths[:-1] + HEADER_BYTES, out=positions[1:])
        positions[1:] += start
    return positions


def layout(lengths: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """(start of each record, total bytes, whether all records have the same size) of a
    message set with these data lengths. Equal sizes make the set a 2-D array, which lets
    every later step use strided views instead of gathers."""
    count = len(lengths)
    if count == 0:
        return np.empty(0, dtype=np.int64), 0, True
    first = int(lengths[0])
    if int(lengths.min()) == int(lengths.max()):
        stride = first + HEADER_BYTES
        return np.arange(0, count * stride, stride, dtype=np.int64), count * stride, True
    positions = positions_from_lengths(lengths)
    return positions, int(positions[-1]) + HEADER_BYTES + int(lengths[-1]), False


def strided_headers(buf, count: int, stride: int) -> np.ndarray:
    """Zero-copy header view of ``count`` records of ``stride`` bytes each."""
    arr = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)
    return np.ndarray((count,), dtype=HEADER_DTYPE, buffer=arr, offset=0, strides=(stride,))


def build_headers(lengths, crcs, msg_ids, flags) -> np.ndarray:
    headers = np.empty(len(lengths), dtype=HEADER_DTYPE)
    headers["length"] = lengths
    headers["crc"] = crcs
    headers["msg_id"] = msg_ids
    headers["flag"] = flags
    return headers


def encode_records(
    datas: Sequence,
    msg_ids,
    flags=0,
    crcs: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    uniform: bool | None = None,
) -> bytes | np.ndarray:
    """Encode whole records for ``datas`` (a sequence of bytes-like data blocks).

    ``msg_ids``, ``flags``, ``crcs`` are scalars or arrays; checksums are computed when not
    given. Returns a bytes-like object (bytes, or a uint8 array when all records share one size,
    which is laid out with a single 2-D copy).
    """
    count = len(datas)
    if count == 0:
        return b""
    if lengths is None:
        lengths = lengths_of(datas)
    if crcs is None:
        crcs = crc32_many(datas)
    headers = build_headers(lengths, crcs, msg_ids, flags)
    first = int(lengths[0])
    if count == 1:
        return headers.tobytes() + bytes(datas[0])
    if uniform is None:
        uniform = int(lengths.min()) == int(lengths.max())
    if uniform:
        out = np.empty((count, HEADER_BYTES + first), dtype=np.uint8)
        out[:, :HEADER_BYTES] = headers.view(np.uint8).reshape(count, HEADER_BYTES)
        if first:
            out[:, HEADER_BYTES:] = np.frombuffer(b"".join(datas), dtype=np.uint8).reshape(count, first)
        return out.reshape(-1)
    header_bytes = headers.tobytes()
    parts: list = [None] * (2 * count)
    parts[0::2] = map(header_bytes.__getitem__, _header_slices(count))
    parts[1::2] = datas
    return b"".join(parts)


_SLICES_CACHE: dict[int, list[slice]] = {}


def _header_slices(count: int) -> list[slice]:
    slices = _SLICES_CACHE.get(count)
    if slices is None:
        slices = [slice(i, i + HEADER_BYTES) for i in range(0, count * HEADER_BYTES, HEADER_BYTES)]
        if len(_SLICES_CACHE) < 64:
            _SLICES_CACHE[count] = slices
    return slices


# ---- decoding -----------------------------------------------------------------------------


def scan_positions(buf, start: int = 0, end: int | None = None, max_records: int | None = None):
    """Walk the records of ``buf[start:end]``: (positions int64 array, end of last whole record).

    Stops at the first record that is cut (fewer than 20 bytes left or data past ``end``), as
    MetaQ's MessageIterator does; a negative length raises ``CorruptRecordError``. Runs of
    equal-sized records are checked with one strided numpy comparison instead of a Python step
    per record.
    """
    view = memoryview(buf).cast("B")
    if end is None:
        end = len(view)
    unpack = _LENGTH.unpack_from
    out: list = []
    count = 0
    limit = max_records if max_records is not None else 1 << 62
    pos = start
    last_size = -1
    while pos + HEADER_BYTES <= end and count < limit:
        (length,) = unpack(view, pos)
        if length < 0:
            raise CorruptRecordError("<buffer>", pos, f"negative record length {length}")
        size = HEADER_BYTES + length
        if pos + size > end:
            break
        if size == last_size:
            run = _equal_size_run(view, pos, size, end, limit - count)
            if run > 1:
                out.append(np.arange(pos, pos + run * size, size, dtype=np.int64))
                count += run
                pos += run * size
                continue
        out.append(pos)
        count += 1
        pos += size
        last_size = size
    return _flatten_positions(out), pos


def _equal_size_run(view, pos: int, size: int, end: int, limit: int) -> int:
    """How many consecutive records of exactly ``size`` bytes start at ``pos`` (>= 1)."""
    fit = min((end - pos) // size, limit)
    if fit <= 1:
        return fit
    arr = np.frombuffer(view, dtype=np.uint8)
    lengths = np.ndarray(shape=(fit,), dtype=">i4", buffer=arr, offset=pos, strides=(size,))
    mismatch = np.flatnonzero(lengths != size - HEADER_BYTES)
    return int(mismatch[0]) if len(mismatch) else fit


def _flatten_positions(parts: list) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=np.int64)
    if all(isinstance(p, int) for p in parts):
        return np.array(parts, dtype=np.int64)
    chunks = []
    ints: list[int] = []
    for p in parts:
        if isinstance(p, int):
            ints.append(p)
        else:
            if ints:
                chunks.append(np.array(ints, dtype=np.int64))
                ints = []
            chunks.append(p)
    if ints:
        chunks.append(np.array(ints, dtype=np.int64))
    return np.concatenate(chunks)


def gather_headers(buf, positions: np.ndarray) -> np.ndarray:
    """Headers of the records starting at ``positions``: a zero-copy strided view when the
    records are equally spaced (it keeps ``buf`` alive), else one fancy-index gather."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    count = len(positions)
    if count == 0:
        return np.empty(0, dtype=HEADER_DTYPE)
    if count > 1:
        stride = int(positions[1] - positions[0])
        if stride >= HEADER_BYTES and (np.diff(positions) == stride).all():
            return np.ndarray(shape=(count,), dtype=HEADER_DTYPE, buffer=arr,
                              offset=int(positions[0]), strides=(stride,))
    index = positions[:, None] + _HEADER_RANGE
    return arr[index].reshape(-1).view(HEADER_DTYPE)


_HEADER_RANGE = np.arange(HEADER_BYTES, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message. ``offset`` is its absolute position in the partition log."""

    msg_id: int
    flag: int
    data: bytes
    offset: int
    attribute: str | None
    payload: bytes

    @property
    def size(self) -> int:
        return HEADER_BYTES + len(self.data)


class MessageSet:
    """A decoded run of whole records over a buffer, with arrays for every header field.

    ``base_offset`` is the log offset of ``buf[0]``; ``next_offset`` is where a consumer goes on
    (the byte after the last whole record, as MetaQ's consumer advances).
    """

    __slots__ = ("buf", "positions", "headers", "base_offset", "consumed")

    def __init__(self, buf, positions: np.ndarray, headers: np.ndarray, base_offset: int, consumed: int):
        self.buf = buf
        self.positions = positions
        self.headers = headers
        self.base_offset = base_offset
        self.consumed = consumed

    @classmethod
    def decode(cls, buf, base_offset: int = 0, *, max_length: int = CLIENT_RECORD_DATA_BYTES_MAX,
               verify: bool = True) -> "MessageSet":
        """Decode every whole record of ``buf`` (a ``get`` answer; the last one may be cut).

        ``verify`` checks each record's CRC and raises ``CorruptRecordError`` at the first bad
        one, as MetaQ's client does; lengths above ``max_length`` are refused the same way.
        """
        positions, consumed = scan_positions(buf)
        return cls._finish(buf, positions, base_offset, consumed, max_length, verify)

    @classmethod
    def decode_with_lengths(cls, buf, lengths: np.ndarray, base_offset: int = 0, *,
                            max_length: int = CLIENT_RECORD_DATA_BYTES_MAX,
                            verify: bool = True) -> "MessageSet":
        """Decode a buffer whose record data lengths are known (a ``getm`` answer's index).

        Fully vectorised; the index is checked against the length field of every record.
        """
        lengths = np.asarray(lengths, dtype=np.int64)
        positions = positions_from_lengths(lengths)
        consumed = int(positions[-1] + HEADER_BYTES + lengths[-1]) if len(lengths) else 0
        if consumed > len(memoryview(buf)):
            raise CorruptRecordError("<buffer>", len(memoryview(buf)),
                                     f"index claims {consumed} bytes, buffer has {len(memoryview(buf))}")
        message_set = cls._finish(buf, positions, base_offset, consumed, max_length, verify)
        bad = np.flatnonzero(message_set.headers["length"] != lengths)
        if len(bad):
            i = int(bad[0])
            raise CorruptRecordError("<buffer>", int(positions[i]),
                                     f"length field {int(message_set.headers['length'][i])} != index {int(lengths[i])}")
        return message_set

    @classmethod
    def _finish(cls, buf, positions, base_offset, consumed, max_length, verify) -> "MessageSet":
        headers = gather_headers(buf, positions)
        too_long = np.flatnonzero(headers["length"] > max_length)
        if len(too_long):
            i = int(too_long[0])
            raise CorruptRecordError("<buffer>", int(positions[i]),
                                     f"Too much long payload length:{int(headers['length'][i])}")
        message_set = cls(buf, positions, headers, base_offset, consumed)
        if verify:
            bad = message_set.first_bad_crc()
            if bad >= 0:
                raise CorruptRecordError("<buffer>", int(positions[bad]), "Checksum failure")
        return message_set

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.consumed

    @property
    def msg_ids(self) -> np.ndarray:
        return self.headers["msg_id"]

    @property
    def flags(self) -> np.ndarray:
        return self.headers["flag"]

    @property
    def lengths(self) -> np.ndarray:
        return self.headers["length"]

    @property
    def offsets(self) -> np.ndarray:
        return self.positions + self.base_offset

    def datas(self) -> list[memoryview]:
        """Zero-copy views of every record's data block."""
        view = memoryview(self.buf).cast("B")
        starts = (self.positions + HEADER_BYTES).tolist()
        ends = (self.positions + HEADER_BYTES + self.headers["length"]).tolist()
        return list(map(view.__getitem__, map(slice, starts, ends)))

    def first_bad_crc(self) -> int:
        """Index of the first record whose CRC does not match its data, or -1."""
        if not len(self):
            return -1
        actual = crc32_many(self.datas())
        bad = np.flatnonzero(actual != self.headers["crc"])
        return int(bad[0]) if len(bad) else -1

    def payloads(self) -> list[bytes]:
        """Payloads (attribute blocks removed) as bytes, in order."""
        datas = self.datas()
        if not (self.headers["flag"] & FLAG_ATTRIBUTE).any():
            return list(map(bytes, datas))
        return [bytes(split_data(d, f)[1]) for d, f in zip(datas, self.headers["flag"].tolist())]

    def __iter__(self) -> Iterator[Message]:
        datas = self.datas()
        ids = self.headers["msg_id"].tolist()
        flags = self.headers["flag"].tolist()
        offsets = self.offsets.tolist()
        for data, msg_id, flag, offset in zip(datas, ids, flags, offsets):
            attribute, payload = split_data(data, flag)
            yield Message(msg_id, flag, bytes(data), offset, attribute, bytes(payload))
