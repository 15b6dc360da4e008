"""MetaQ protocol encoders: command and reply objects -> the bytes on the wire (sans-IO).

Imports: numpy, metaq_fast.errors / limits and protocol.commands only. The vectorised put-reply
formatter is ``_put_replies.py``; decoding is ``_readers.py``; ``protocol/__init__.py`` is the
public face.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from metaq_fast.errors import SUCCESS
from metaq_fast.protocol.commands import (
    AdminCommand,
    GetBatchCommand,
    GetCommand,
    OffsetCommand,
    PutBatchCommand,
    PutCommand,
    QuitCommand,
    ResultReply,
    StatsCommand,
    SyncCommand,
    TransactionCommand,
    ValueReply,
    ValuesReply,
    VersionCommand,
)


# ---- encoders --------------------------------------------------------------------------------


def _utf8(text: str) -> bytes:
    return text.encode("utf-8")


def _encode_put(cmd: PutCommand) -> bytes:
    data = cmd.data
    if cmd.tx_key is None:
        head = b"put %s %d %d %d %d %d\r\n" % (_utf8(cmd.topic), cmd.partition, len(data), cmd.flag, cmd.checksum, cmd.opaque)
    else:
        head = b"put %s %d %d %d %d %s %d\r\n" % (
            _utf8(cmd.topic),
            cmd.partition,
            len(data),
            cmd.flag,
            cmd.checksum,
            _utf8(cmd.tx_key),
            cmd.opaque,
        )
    return head + data


def _encode_get(cmd: GetCommand) -> bytes:
    return b"get %s %s %d %d %d %d\r\n" % (
        _utf8(cmd.topic),
        _utf8(cmd.group),
        cmd.partition,
        cmd.offset,
        cmd.max_size,
        cmd.opaque,
    )


def _encode_getm(cmd: GetBatchCommand) -> bytes:
    return b"getm %s %s %d %d %d %d\r\n" % (
        _utf8(cmd.topic),
        _utf8(cmd.group),
        cmd.partition,
        cmd.offset,
        cmd.max_size,
        cmd.opaque,
    )


def _encode_offset(cmd: OffsetCommand) -> bytes:
    return b"offset %s %s %d %d %d\r\n" % (_utf8(cmd.topic), _utf8(cmd.group), cmd.partition, cmd.offset, cmd.opaque)


def _encode_stats(cmd: StatsCommand) -> bytes:
    # StatsCommand.encode: a blank item is written as two spaces.
    if not cmd.item or cmd.item.isspace():
        return b"stats  %d\r\n" % cmd.opaque
    return b"stats %s %d\r\n" % (_utf8(cmd.item), cmd.opaque)


def _encode_version(cmd: VersionCommand) -> bytes:
    return b"version %d\r\n" % cmd.opaque


def _encode_quit(cmd: QuitCommand) -> bytes:
    return b"quit\r\n"


def _encode_sync(cmd: SyncCommand) -> bytes:
    data = cmd.data
    head = b"sync %s %d %d %d %d %d %d\r\n" % (
        _utf8(cmd.topic),
        cmd.partition,
        len(data),
        cmd.flag,
        cmd.msg_id,
        cmd.checksum,
        cmd.opaque,
    )
    return head + data


def _encode_transaction(cmd: TransactionCommand) -> bytes:
    parts = [b"transaction", _utf8(cmd.tx_key), _utf8(cmd.session_id), _utf8(cmd.type)]
    if cmd.timeout > 0:
        parts.append(b"%d" % cmd.timeout)
    qualifier = cmd.unique_qualifier
    if qualifier and not qualifier.isspace():
        parts.append(_utf8(qualifier))
    parts.append(b"%d\r\n" % cmd.opaque)
    return b" ".join(parts)


def _encode_result_reply(reply: ResultReply) -> bytes:
    return b"result %d %d %d\r\n" % (reply.code, len(reply.body), reply.opaque) + reply.body


def _encode_value_reply(reply: ValueReply) -> bytes:
    return b"value %d %d\r\n" % (len(reply.data), reply.opaque) + reply.data


def _encode_putm(cmd: PutBatchCommand) -> bytes:
    head = b"putm %s %d %d %d %d %d\r\n" % (
        _utf8(cmd.topic),
        cmd.partition,
        cmd.count,
        len(cmd.body),
        cmd.checksum,
        cmd.opaque,
    )
    return head + cmd.body


def _encode_values_reply(reply: ValuesReply) -> bytes:
    return encode_values_header(reply.data_length, reply.count, reply.opaque, reply.index,
                                reply.checksum) + reply.data


def _encode_admin(cmd: AdminCommand) -> bytes:
    parts = [b"admin", _utf8(cmd.verb), *(_utf8(a) for a in cmd.args), b"%d\r\n" % cmd.opaque]
    return b" ".join(parts)


_ENCODERS: dict[type, Any] = {
    PutCommand: _encode_put,
    GetCommand: _encode_get,
    OffsetCommand: _encode_offset,
    StatsCommand: _encode_stats,
    VersionCommand: _encode_version,
    QuitCommand: _encode_quit,
    SyncCommand: _encode_sync,
    TransactionCommand: _encode_transaction,
    ResultReply: _encode_result_reply,
    ValueReply: _encode_value_reply,
    PutBatchCommand: _encode_putm,
    GetBatchCommand: _encode_getm,
    ValuesReply: _encode_values_reply,
    AdminCommand: _encode_admin,
}


def encode(command: Any) -> bytes:
    """Wire bytes of any command or reply of ``commands.py`` (Java encoders' exact forms)."""
    try:
        encoder = _ENCODERS[type(command)]
    except KeyError:
        raise TypeError(f"cannot encode {type(command).__name__}") from None
    return encoder(command)


def encode_result(code: int, body: bytes | bytearray | memoryview | str, opaque: int) -> bytes:
    """``result <code> <len> <opaque>\\r\\n<body>``; a str body is encoded as UTF-8."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return b"result %d %d %d\r\n" % (code, len(body), opaque) + body


def encode_value_header(length: int, opaque: int) -> bytes:
    """``value <length> <opaque>\\r\\n``: send ``length`` data bytes after it (sendfile)."""
    return b"value %d %d\r\n" % (length, opaque)


def encode_values_header(data_length: int, count: int, opaque: int,
                         index_bytes: bytes | bytearray | memoryview, checksum: int) -> bytes:
    """``values <dataLength> <count> <checksum> <opaque>\\r\\n`` + the index (``count`` BE
    uint32 record data lengths); send the ``data_length`` bytes of whole records after it
    (zero-copy). ``checksum``: xxh3_64 of those bytes."""
    if len(index_bytes) != 4 * count:
        raise ValueError(f"index of {len(index_bytes)} bytes for {count} records, expected {4 * count}")
    return b"values %d %d %d %d\r\n" % (data_length, count, checksum, opaque) + index_bytes


def encode_put_ok(msg_id: int, partition: int, offset: int, opaque: int) -> bytes:
    """A successful put reply: ``result 200 <len> <opaque>\\r\\n<msgId> <partition> <offset>``."""
    body = b"%d %d %d" % (msg_id, partition, offset)
    return b"result 200 %d %d\r\n%s" % (len(body), opaque, body)


def encode_putm_ok(partition: int, first_offset: int, ids_array_bytes: Any, opaque: int) -> bytes:
    """A successful putm reply: body ``<partition> <firstOffset> <count>\\n`` + count int64 BE ids.

    ``ids_array_bytes``: the ids as big-endian int64 bytes (or an integer ndarray).
    """
    if isinstance(ids_array_bytes, np.ndarray):
        ids_array_bytes = ids_array_bytes.astype(">i8", copy=False).tobytes()
    size = len(ids_array_bytes)
    if size % 8:
        raise ValueError(f"ids of {size} bytes, expected a multiple of 8")
    head = b"%d %d %d\n" % (partition, first_offset, size // 8)
    return b"result %d %d %d\r\n" % (SUCCESS, len(head) + size, opaque) + head + ids_array_bytes


def encode_stats_body(lines: Iterable[str]) -> bytes:
    """``STATS\\r\\n`` + each line + ``\\r\\n`` + ``END\\r\\n`` (UTF-8)."""
    return b"STATS\r\n" + b"".join(line.encode("utf-8") + b"\r\n" for line in lines) + b"END\r\n"
