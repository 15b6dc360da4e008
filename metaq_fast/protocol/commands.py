"""The requests and replies of the MetaQ text protocol (plus our extensions) as frozen dataclasses.

Responsibility: one immutable value type per wire command, validated on construction, and the
MetaQ rules for transaction keys. No parsing of wire bytes here (that is ``_decoding.py`` and
``_readers.py``).
Allowed imports: stdlib, numpy, ``metaq_fast.errors``, ``metaq_fast.limits``.

Wire forms (``SP`` = one space, every line ends with ``\\r\\n``; see reference section 2):

=====================  =====================================================================
``PutCommand``         ``put <topic> <partition> <length> <flag> <checksum> [<txKey>] <opaque>``
                       + body (the decoder also takes the legacy 6-token and 7-token-tx forms)
``GetCommand``         ``get <topic> <group> <partition> <offset> <maxSize> <opaque>``
``OffsetCommand``      ``offset <topic> <group> <partition> <offset> <opaque>``
``StatsCommand``       ``stats [<item> [<opaque>]]``
``VersionCommand``     ``version [<opaque>]``
``QuitCommand``        ``quit``
``SyncCommand``        ``sync <topic> <partition> <length> <flag> <msgId> [<checksum>] <opaque>``
                       + body
``TransactionCommand`` ``transaction <txKey> <sessionId> <type> [<timeout>] [<qualifier>] <opaque>``
``ResultReply``        ``result <code> <length> <opaque>`` + body
``ValueReply``         ``value <length> <opaque>`` + data
=====================  =====================================================================

Extensions of metaq_fast (MetaQ clients never send them):

=====================  =====================================================================
``PutBatchCommand``    ``putm <topic> <partition> <count> <length> <checksum> <opaque>`` + body:
                       ``count`` big-endian uint32 record data lengths, then a MetaQ message set
                       of ``count`` records (20-byte header ``len:i32|crc:i32|id:i64|flag:i32`` BE
                       + data, ids 0); ``checksum`` = xxh3_64 of the whole body (unsigned decimal)
                       or -1
``GetBatchCommand``    ``getm <topic> <group> <partition> <offset> <maxSize> <opaque>``
``ValuesReply``        ``values <dataLength> <count> <checksum> <opaque>`` + ``count`` BE uint32
                       record data lengths + ``dataLength`` bytes of whole records; checksum =
                       xxh3_64 of those bytes (unsigned decimal)
``AdminCommand``       ``admin <verb> <args...> <opaque>`` (no body)
=====================  =====================================================================

Bodies (``data``/``body``) are ``bytes`` or a read-only ``memoryview`` over an immutable ``bytes``
object (the decoder hands out zero-copy views for large bodies; see ``_readers.RequestDecoder``).
Such a view stays valid for as long as it is referenced - it keeps the underlying receive chunk
alive, so do not hold many of them for long.

Construction validates what would make the wire form wrong or ambiguous (integer ranges, tokens
with a space or CRLF, transaction keys) and raises ``InvalidArgumentError``. The decoder builds
instances through ``_builder`` without this validation: a decoded command carries exactly what
the wire said within MetaQ's decoding rules (for example an empty topic), and judging names is
the broker's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Union

import numpy as np

from metaq_fast import limits
from metaq_fast.errors import InvalidArgumentError

__all__ = [
    "AdminCommand",
    "Body",
    "GetBatchCommand",
    "GetCommand",
    "OffsetCommand",
    "OPAQUE_DEFAULT",
    "PutBatchCommand",
    "PutCommand",
    "QuitCommand",
    "ResultReply",
    "StatsCommand",
    "SyncCommand",
    "TRANSACTION_TYPES",
    "TransactionCommand",
    "ValueReply",
    "ValuesReply",
    "VersionCommand",
    "canonical_tx_key",
    "java_split",
    "parse_java_int",
]

# ---- wire facts ----------------------------------------------------------------------------

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1

# Opaque of `version` and `stats` lines that carry none (Java Integer.MAX_VALUE).
OPAQUE_DEFAULT = INT32_MAX

# MetaQ's TransactionInfo.TransactionType names; case-sensitive (Java Enum.valueOf).
TRANSACTION_TYPES = frozenset(
    (
        "BEGIN",
        "PREPARE",
        "COMMIT_ONE_PHASE",
        "COMMIT_TWO_PHASE",
        "ROLLBACK",
        "RECOVER",
        "FORGET",
        "END",
    )
)

# A putm body holds per record at least its 4-byte index entry and its 20-byte header.
BATCH_RECORD_OVERHEAD_BYTES = 4 + limits.RECORD_HEADER_BYTES

Body = Union[bytes, memoryview]

# ---- Java parsing helpers (shared with _decoding.py) -----------------------------------------

# Integer.parseInt / Long.parseLong accept an optional sign and decimal digits. (Java also takes
# non-ASCII Unicode digits; we take ASCII only - a documented, deliberate deviation.)
_JAVA_INT_STR = re.compile(r"[+-]?[0-9]+\Z")
# HexSupport.toBytesFromHex parses each 2-char pair with Integer.parseInt(pair, 16).
_JAVA_HEX_PAIR = re.compile(r"[0-9a-fA-F]{2}|[+-][0-9a-fA-F]\Z")


def parse_java_int(text: str, lo: int = INT32_MIN, hi: int = INT32_MAX) -> int:
    """Parse like Java's ``Integer.parseInt`` (``lo``/``hi`` select int32 or int64 range).

    Raises ValueError when ``text`` is not a number in ``[lo, hi]``.
    """
    if not _JAVA_INT_STR.match(text):
        raise ValueError(f"not a number: {text!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f"{text!r} outside {lo}..{hi}")
    return value


def java_split(text: str, sep: str) -> list[str]:
    """``Pattern.compile(sep).split(text)`` for a literal one-char ``sep``.

    Interior and leading empty tokens are kept, trailing empty tokens are dropped (so an input
    of only separators gives ``[]``), and an input without separator gives ``[text]``.
    """
    parts = text.split(sep)
    if len(parts) == 1:
        return parts
    while parts and not parts[-1]:
        parts.pop()
    return parts


def _hex_bytes(text: str) -> bytes:
    # HexSupport.toBytesFromHex: len // 2 pairs, an odd last char is ignored.
    out = bytearray()
    for i in range(len(text) // 2):
        pair = text[2 * i : 2 * i + 2]
        if not _JAVA_HEX_PAIR.match(pair):
            raise ValueError(f"bad hex pair {pair!r}")
        out.append(int(pair, 16) & 0xFF)
    return bytes(out)


def canonical_tx_key(key: str) -> str:
    """Validate a MetaQ transaction key and return it as Java prints it (``getTransactionKey``).

    Forms: ``null``; ``TX:<sessionId>:<n>`` (``:``-split gives exactly 3 parts, Java split
    semantics, ``n`` int32); ``XID:<formatId>:<gtid hex>:<bqual hex>:<uniqueQualifier>`` (exactly
    5 parts, empties kept, formatId int32). The canonical form re-prints the parsed values, so
    ``TX:s:007`` becomes ``TX:s:7`` and hex becomes lower case, which is the identity MetaQ uses.
    Raises ValueError for anything else.
    """
    if key == "null":
        return key
    if key.startswith("XID:"):
        parts = key.split(":")
        if len(parts) != 5:
            raise ValueError(f"XA transaction key needs 5 ':'-separated parts, got {len(parts)}")
        format_id = parse_java_int(parts[1])
        gtid = _hex_bytes(parts[2])
        bqual = _hex_bytes(parts[3])
        return f"XID:{format_id}:{gtid.hex()}:{bqual.hex()}:{parts[4]}"
    if key.startswith("TX:"):
        parts = java_split(key, ":")
        if len(parts) != 3:
            raise ValueError(f"local transaction key needs 3 ':'-separated parts, got {len(parts)}")
        return f"TX:{parts[1]}:{parse_java_int(parts[2])}"
    raise ValueError("transaction key must be 'null', 'TX:<session>:<n>' or 'XID:...'")


# ---- construction checks ---------------------------------------------------------------------


def _bad(cls: type, name: str, value: Any, expected: str) -> InvalidArgumentError:
    text = repr(value)
    if len(text) > 64:
        text = text[:64] + "..."
    return InvalidArgumentError(f"{cls.__name__}.{name}={text}, expected {expected}")


def _check_int(obj: Any, name: str, lo: int, hi: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise _bad(type(obj), name, value, f"an int in {lo}..{hi}")
    if type(value) is not int:
        object.__setattr__(obj, name, int(value))


def _check_token(obj: Any, name: str, *, allow_empty: bool = True) -> None:
    # A token may not contain a space (it would split) nor CRLF (it would end the line).
    value = getattr(obj, name)
    if not isinstance(value, str):
        raise _bad(type(obj), name, value, "a str")
    if not allow_empty and not value:
        raise _bad(type(obj), name, value, "a non-empty str")
    if " " in value or "\r\n" in value:
        raise _bad(type(obj), name, value, "a str without spaces or CRLF")


def _check_body(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, bytes):
        return
    if isinstance(value, bytearray):
        object.__setattr__(obj, name, bytes(value))
        return
    if isinstance(value, memoryview):
        if not value.readonly or value.format != "B" or value.ndim != 1 or not value.contiguous:
            object.__setattr__(obj, name, value.tobytes())
        return
    raise _bad(type(obj), name, value, "bytes or memoryview")


def _check_tx_key(obj: Any, name: str, *, optional: bool) -> None:
    value = getattr(obj, name)
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise _bad(type(obj), name, value, "a transaction key str" + (" or None" if optional else ""))
    try:
        canonical = canonical_tx_key(value)
    except ValueError as exc:
        raise _bad(type(obj), name, value, f"a valid transaction key ({exc})") from None
    _check_token(obj, name)
    if canonical != value:
        object.__setattr__(obj, name, canonical)


# ---- MetaQ requests --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutCommand:
    """Store one message. ``checksum`` -1 = none (else CRC32(data) & 0x7FFFFFFF); ``tx_key``
    None outside a transaction (canonical key otherwise, ``"null"`` kept as sent)."""

    topic: str
    partition: int
    data: Body
    flag: int
    checksum: int
    tx_key: str | None
    opaque: int

    def __post_init__(self) -> None:
        _check_token(self, "topic")
        _check_int(self, "partition", INT32_MIN, INT32_MAX)
        _check_body(self, "data")
        if len(self.data) > INT32_MAX:
            raise _bad(type(self), "data", "<%d bytes>" % len(self.data), "at most 2**31-1 bytes")
        _check_int(self, "flag", INT32_MIN, INT32_MAX)
        _check_int(self, "checksum", INT32_MIN, INT32_MAX)
        _check_tx_key(self, "tx_key", optional=True)
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)


class PutRun:
    """Pipelined puts to one partition with one body length and flag, decoded together.

    The broker's hot path: a MetaQ producer pipelining single ``put``s sends runs of lines that
    differ only in their opaque (and maybe checksum). Decoding such a run into three lists
    instead of one object per put is what lets a Python broker answer several hundred thousand
    puts a second. Produced by ``RequestDecoder(put_runs=True)``; ``commands()`` gives the same
    puts as ``PutCommand`` objects.
    """

    __slots__ = ("topic", "partition", "flag", "datas", "checksums", "opaques")

    def __init__(self, topic: str, partition: int, flag: int, datas: list, checksums: list[int],
                 opaques: list[int]):
        self.topic = topic
        self.partition = partition
        self.flag = flag
        self.datas = datas
        self.checksums = checksums
        self.opaques = opaques

    def __len__(self) -> int:
        return len(self.opaques)

    def commands(self) -> list["PutCommand"]:
        return [PutCommand(self.topic, self.partition, d, self.flag, c, None, o)
                for d, c, o in zip(self.datas, self.checksums, self.opaques)]

    def __repr__(self) -> str:
        return (f"PutRun(topic={self.topic!r}, partition={self.partition}, flag={self.flag}, "
                f"puts={len(self)})")


def _check_fetch(cmd) -> None:
    """The fields ``get`` and ``getm`` share, checked alike."""
    _check_token(cmd, "topic")
    _check_token(cmd, "group")
    _check_int(cmd, "partition", INT32_MIN, INT32_MAX)
    _check_int(cmd, "offset", INT64_MIN, INT64_MAX)
    _check_int(cmd, "max_size", INT32_MIN, INT32_MAX)
    _check_int(cmd, "opaque", INT32_MIN, INT32_MAX)


@dataclass(frozen=True, slots=True)
class GetCommand:
    """Fetch up to ``max_size`` bytes of a partition's log starting at byte ``offset``."""

    topic: str
    group: str
    partition: int
    offset: int
    max_size: int
    opaque: int

    def __post_init__(self) -> None:
        _check_fetch(self)


@dataclass(frozen=True, slots=True)
class OffsetCommand:
    """Ask for the nearest valid offset of a partition."""

    topic: str
    group: str
    partition: int
    offset: int
    opaque: int

    def __post_init__(self) -> None:
        _check_token(self, "topic")
        _check_token(self, "group")
        _check_int(self, "partition", INT32_MIN, INT32_MAX)
        _check_int(self, "offset", INT64_MIN, INT64_MAX)
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)


@dataclass(frozen=True, slots=True)
class StatsCommand:
    """Statistics; ``item`` is ``""`` for the system stats (absent or blank on the wire)."""

    item: str
    opaque: int = OPAQUE_DEFAULT

    def __post_init__(self) -> None:
        _check_token(self, "item")
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)


@dataclass(frozen=True, slots=True)
class VersionCommand:
    """Version request (also the Java client's heartbeat)."""

    opaque: int = OPAQUE_DEFAULT

    def __post_init__(self) -> None:
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)


@dataclass(frozen=True, slots=True)
class QuitCommand:
    """Close the connection without a reply."""


@dataclass(frozen=True, slots=True)
class SyncCommand:
    """Synchronous replication of one message from a master (``checksum`` -1 = none)."""

    topic: str
    partition: int
    data: Body
    flag: int
    msg_id: int
    checksum: int
    opaque: int

    def __post_init__(self) -> None:
        _check_token(self, "topic")
        _check_int(self, "partition", INT32_MIN, INT32_MAX)
        _check_body(self, "data")
        if len(self.data) > INT32_MAX:
            raise _bad(type(self), "data", "<%d bytes>" % len(self.data), "at most 2**31-1 bytes")
        _check_int(self, "flag", INT32_MIN, INT32_MAX)
        _check_int(self, "msg_id", INT64_MIN, INT64_MAX)
        _check_int(self, "checksum", INT32_MIN, INT32_MAX)
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)


@dataclass(frozen=True, slots=True)
class TransactionCommand:
    """A transaction step. ``timeout`` 0 and ``unique_qualifier`` None when absent.

    Encoding follows the Java client: the timeout is written only if > 0, the qualifier only if
    not blank. So a qualifier of digits only with timeout <= 0 decodes back as a timeout
    (MetaQ quirk, reference 17 item 12) and a negative timeout is not sent.
    """

    tx_key: str
    session_id: str
    type: str
    timeout: int
    unique_qualifier: str | None
    opaque: int

    def __post_init__(self) -> None:
        _check_tx_key(self, "tx_key", optional=False)
        _check_token(self, "session_id")
        if self.type not in TRANSACTION_TYPES:
            raise _bad(type(self), "type", self.type, "one of " + ", ".join(sorted(TRANSACTION_TYPES)))
        _check_int(self, "timeout", INT32_MIN, INT32_MAX)
        if self.unique_qualifier is not None:
            _check_token(self, "unique_qualifier")
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)


# ---- MetaQ replies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultReply:
    """``result``: a status code (``errors.SUCCESS`` ...) and a body (UTF-8 text or offsets)."""

    code: int
    body: Body
    opaque: int

    def __post_init__(self) -> None:
        _check_int(self, "code", INT32_MIN, INT32_MAX)
        _check_body(self, "body")
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)


@dataclass(frozen=True, slots=True)
class ValueReply:
    """``value``: a raw slice of a partition's log (may end inside a record)."""

    data: Body
    opaque: int

    def __post_init__(self) -> None:
        _check_body(self, "data")
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)


# ---- metaq_fast extensions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutBatchCommand:
    """``putm``: ``count`` records in one body (index of data lengths + message set).

    The codec only frames it; records are validated by the storage layer.
    """

    topic: str
    partition: int
    count: int
    body: Body
    checksum: int
    opaque: int

    def __post_init__(self) -> None:
        _check_token(self, "topic")
        _check_int(self, "partition", INT32_MIN, INT32_MAX)
        _check_int(self, "count", 1, limits.BATCH_RECORDS_MAX)
        _check_body(self, "body")
        if len(self.body) < BATCH_RECORD_OVERHEAD_BYTES * self.count:
            raise _bad(type(self), "body", "<%d bytes>" % len(self.body), "at least 24 bytes per record")
        _check_int(self, "checksum", -1, UINT64_MAX)
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)

    def record_lengths(self) -> np.ndarray:
        """The index: data length of each record (big-endian uint32 view, no copy)."""
        return np.frombuffer(self.body, dtype=">u4", count=self.count)

    def message_set(self) -> Body:
        """The message set that follows the index."""
        return memoryview(self.body)[4 * self.count :]


@dataclass(frozen=True, slots=True)
class GetBatchCommand:
    """``getm``: like ``get`` but answered with ``values`` (whole records plus an index)."""

    topic: str
    group: str
    partition: int
    offset: int
    max_size: int
    opaque: int

    def __post_init__(self) -> None:
        _check_fetch(self)


@dataclass(frozen=True, slots=True)
class ValuesReply:
    """``values``: ``count`` whole records (``data``, ``data_length`` bytes), their index
    (``count`` big-endian uint32 record data lengths) and ``checksum``, the xxh3-64 of ``data``
    (unsigned decimal on the wire): one hash vouches for the whole answer, storage to client."""

    data_length: int
    count: int
    checksum: int
    index: Body
    data: Body
    opaque: int

    def __post_init__(self) -> None:
        _check_int(self, "data_length", 0, INT64_MAX)
        _check_int(self, "count", 0, limits.BATCH_RECORDS_MAX)
        _check_int(self, "checksum", 0, 2**64 - 1)
        _check_body(self, "index")
        _check_body(self, "data")
        if len(self.index) != 4 * self.count:
            raise _bad(type(self), "index", "<%d bytes>" % len(self.index), "4 bytes per record")
        if len(self.data) != self.data_length:
            raise _bad(type(self), "data", "<%d bytes>" % len(self.data), "data_length bytes")
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)

    def record_lengths(self) -> np.ndarray:
        """Data length of each record (big-endian uint32 view, no copy)."""
        return np.frombuffer(self.index, dtype=">u4", count=self.count)


@dataclass(frozen=True, slots=True)
class AdminCommand:
    """``admin``: an operator request; verbs and their arguments are the broker's business."""

    verb: str
    args: tuple[str, ...]
    opaque: int

    def __post_init__(self) -> None:
        _check_token(self, "verb", allow_empty=False)
        if not isinstance(self.args, tuple):
            if not isinstance(self.args, list):
                raise _bad(type(self), "args", self.args, "a tuple of str")
            object.__setattr__(self, "args", tuple(self.args))
        for arg in self.args:
            if not isinstance(arg, str) or " " in arg or "\r\n" in arg:
                raise _bad(type(self), "args", self.args, "str tokens without spaces or CRLF")
        _check_int(self, "opaque", INT32_MIN, INT32_MAX)


# ---- fast construction for the decoder ----------------------------------------------------------


def _builder(cls: type) -> Callable[..., Any]:
    """A constructor of ``cls`` instances that skips validation and the frozen ``__setattr__``.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which costs
    about 2 us per 7-field object on the reference machine - more than decoding the line. The
    builder is a plain slotted twin class with the same slot layout whose ``__init__`` stores the
    fields directly and then re-labels the instance as ``cls``; the result is an ordinary ``cls``
    instance (``type(x) is cls``, equal, hashable, frozen).
    """
    names = tuple(f.name for f in fields(cls))
    assert cls.__slots__ == names, (cls, cls.__slots__)
    args = ", ".join(names)
    body = "".join(f"    self.{n} = {n}\n" for n in names) + "    self.__class__ = _cls\n"
    src = f"def __init__(self{', ' if names else ''}{args}):\n{body}"
    namespace: dict[str, Any] = {"_cls": cls}
    exec(src, namespace)  # noqa: S102 - generated from dataclass field names only
    twin = type(f"_{cls.__name__}Builder", (), {"__slots__": names, "__init__": namespace["__init__"]})
    probe = twin(*([None] * len(names)))
    assert type(probe) is cls
    return twin
