"""Sans-IO decoders of the MetaQ text protocol: ``RequestDecoder`` (the broker side, with its
fast path for pipelined puts and gets) and ``ResponseDecoder`` (the client side), on the
framing, parsing helpers and rules of ``_decoding.py``.

Allowed imports: stdlib, numpy, ``metaq_fast.errors`` / ``limits`` and the protocol modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metaq_fast import limits
from metaq_fast.errors import ProtocolError
from metaq_fast.protocol.commands import (
    PutRun,
    BATCH_RECORD_OVERHEAD_BYTES,
    INT32_MAX,
    OPAQUE_DEFAULT,
    TRANSACTION_TYPES,
    UINT64_MAX,
)
from metaq_fast.protocol._decoding import (  # the framing and parsing helpers
    BODY_COPY_BYTES_MAX_DEFAULT,
    _Decoder,
    _error,
    _exact_tokens,
    _expect,
    FRAME_BYTES_MAX_DEFAULT,
    _GET_FAST,
    _int,
    _int64,
    _java_int,
    NEED_DATA,
    _need_tokens,
    _new_admin,
    _new_get,
    _new_getm,
    _new_offset,
    _new_put,
    _new_putm,
    _new_result,
    _new_stats,
    _new_sync,
    _new_transaction,
    _new_values,
    _new_version,
    _PUT_FAST,
    _PUT_FAST_TAIL_BYTES_MAX,
    _PUT_KEY_CACHE_ENTRIES_MAX,
    _QUIT,
    REPLY_BODY_BYTES_MAX_DEFAULT,
    _RESULT_FAST,
    _snip,
    _text,
    _tx_key,
)

from metaq_fast.protocol.replication import ReplicateCommand, parse_replicate_line

__all__ = ["RequestDecoder", "ResponseDecoder", "parse_putm_ok"]


class RequestDecoder(_Decoder):
    """Broker side: decodes requests (and, like MetaQ, ``result``/``value`` a client might send,
    which the broker should ignore).

    Parameters (all bytes):
      max_line_bytes:  longest command line; a longer one is a fatal error.
      max_body_bytes:  largest put/sync body (the maximum message size); a larger one within
                       the framing limit is skipped with a non-fatal ``MessageTooLargeError``.
      max_batch_bytes: largest putm body, same treatment.
      frame_bytes_max: hard framing limit on any declared length; above it: fatal.
      copy_body_bytes_max: bodies up to this size are bytes, larger ones memoryviews.
    """

    __slots__ = ("_put_runs",)

    def __init__(
        self,
        max_line_bytes: int = limits.LINE_BYTES_MAX,
        max_body_bytes: int = limits.MESSAGE_BYTES_MAX_DEFAULT,
        max_batch_bytes: int = limits.BATCH_BYTES_MAX_DEFAULT,
        *,
        frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
        copy_body_bytes_max: int = BODY_COPY_BYTES_MAX_DEFAULT,
        put_runs: bool = False,
    ) -> None:
        super().__init__(max_line_bytes, max_body_bytes, max_batch_bytes, frame_bytes_max, copy_body_bytes_max)
        self._dispatch = _REQUEST_DISPATCH
        self._put_runs = put_runs  # decode pipelined puts to one partition as PutRun objects

    # ---- fast path -------------------------------------------------------------------------------

    def _read_into(self, out: list[Any], limit: int) -> None:
        append = out.append
        match_put = _PUT_FAST.match
        match_get = _GET_FAST.match
        names = self._names
        puts = self._puts
        max_line = self._max_line
        copy_max = self._copy_max
        new_put = _new_put
        new_get = _new_get
        decode_one = self._decode_one
        buf = self._buf
        pos = self._pos
        have = len(buf)
        count = len(out)
        while count < limit:
            if pos >= have:
                self._pos = pos
                return
            first = buf[pos]
            if first == 112:  # "p"
                m = match_put(buf, pos)
                if m is not None:
                    key, checksum_b, opaque_b = m.groups()
                    info = puts.get(key)
                    if info is None:
                        info = self._put_key(key)
                    start = m.end()
                    length = info[2]  # -1: line or body possibly over a limit, see _put_key
                    end = start + length
                    if length >= 0 and end <= have:
                        opaque = int(opaque_b)
                        if checksum_b is None or checksum_b == b"-1":
                            checksum = -1
                        else:
                            checksum = int(checksum_b)
                        if -2147483649 < checksum < 2147483648 and -2147483649 < opaque < 2147483648:
                            data = buf[start:end] if length <= copy_max else memoryview(buf)[start:end]
                            if self._put_runs:
                                run = PutRun(info[0], info[1], info[3], [data], [checksum], [opaque])
                                pos = _extend_put_run(run, buf, end, have, b"put " + key + b" ",
                                                      length, copy_max, limit - count - 1)
                                append(run)
                                count += len(run)
                                continue
                            append(new_put(info[0], info[1], data, info[3], checksum, None, opaque))
                            count += 1
                            pos = end
                            continue
            elif first == 103:  # "g"
                m = match_get(buf, pos)
                if m is not None and m.end() - pos <= max_line + 2:
                    topic_b, group_b, partition_b, offset_b, max_size_b, opaque_b = m.groups()
                    max_size = int(max_size_b)
                    opaque = int(opaque_b)
                    if -2147483649 < max_size < 2147483648 and -2147483649 < opaque < 2147483648:
                        topic = names.get(topic_b)
                        if topic is None:
                            topic = self._name(topic_b)
                        group = names.get(group_b)
                        if group is None:
                            group = self._name(group_b)
                        append(new_get(topic, group, int(partition_b), int(offset_b), max_size, opaque))
                        count += 1
                        pos = m.end()
                        continue
            # General path: the specification.
            self._pos = pos
            cmd = decode_one()
            if cmd is NEED_DATA:
                return
            append(cmd)
            count += 1
            buf = self._buf
            pos = self._pos
            have = len(buf)
        self._pos = pos

    def _put_key(self, key: bytes) -> tuple[str, int, int, int]:
        """Memoise ``(topic, partition, length, flag)`` of a fast-path put line's key; length
        -1 when the general path must decide (line or body possibly over their limits)."""
        topic_b, partition_b, length_b, flag_b = key.split(b" ")
        length = int(length_b)
        if length > self._max_body or 4 + len(key) + _PUT_FAST_TAIL_BYTES_MAX > self._max_line + 2:
            length = -1
        info = (_text(topic_b), int(partition_b), length, int(flag_b))
        puts = self._puts
        if len(puts) >= _PUT_KEY_CACHE_ENTRIES_MAX:
            puts.clear()
        puts[key] = info
        return info

    # ---- general path ----------------------------------------------------------------------------

    def _put(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        if toks[0] != b"put":
            if toks[0] == b"putm":
                return self._putm(toks, line, eol)
            _expect(toks[0], b"put")
        ntok = len(toks)
        _need_tokens(toks, 4, "put", line)
        length = self._length(toks[3], "put", self._max_body)
        if ntok not in (6, 7, 8):
            raise _error(f"Invalid put command: {ntok} tokens, expected 6, 7 or 8: {_snip(line)}")
        topic = self._name(toks[1])
        partition = _int(toks[2], "partition", "put")
        flag = _int(toks[4], "flag", "put")
        tx_key = None
        checksum = -1
        if ntok == 7:
            slot = toks[5]
            if not slot:
                raise _error(f"empty checksum or transaction key in put: {_snip(line)}")
            if slot[0] in b"0123456789-":
                checksum = _int(slot, "checksum", "put")
            else:
                tx_key = _tx_key(slot, "put")
        elif ntok == 8:
            checksum = _int(toks[5], "checksum", "put")
            tx_key = _tx_key(toks[6], "put")
        opaque = _int(toks[ntok - 1], "opaque", "put")
        data = self._message_body(eol, length, "put", opaque)
        if data is None:
            return NEED_DATA
        return _new_put(topic, partition, data, flag, checksum, tx_key, opaque)

    def _message_body(self, eol: int, length: int, verb: str, opaque: int):
        """The body of one put or sync, or None until it is all here. Above maxMessageSize it is
        refused, and the stream skips it (the error answers that request, the next one goes on)."""
        if length > self._max_body:
            raise self._reject_body(eol, length, _error(
                f"{verb} body of {length} bytes exceeds the maximum message size {self._max_body}",
                fatal=False, opaque=opaque, too_large=True))
        return self._take_body(eol, length)

    def _putm(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        _exact_tokens(toks, 7, "putm", line)
        length = self._length(toks[4], "putm", self._max_batch)
        topic = self._name(toks[1])
        partition = _int(toks[2], "partition", "putm")
        count = _int(toks[3], "count", "putm")
        checksum_b = toks[5]
        checksum = _java_int(checksum_b) if checksum_b[:1] not in (b"+", b"-") or checksum_b == b"-1" else None
        if checksum is None or not -1 <= checksum <= UINT64_MAX:
            raise _error(f"bad checksum {_snip(checksum_b)} in putm, expected -1 or 0..{UINT64_MAX}")
        opaque = _int(toks[6], "opaque", "putm")
        problem = None
        if not 1 <= count <= limits.BATCH_RECORDS_MAX:
            problem = f"bad count {count} in putm, expected 1..{limits.BATCH_RECORDS_MAX}"
        elif length > self._max_batch:
            problem = f"putm body of {length} bytes exceeds the maximum batch size {self._max_batch}"
        elif length < BATCH_RECORD_OVERHEAD_BYTES * count:
            problem = f"putm body of {length} bytes too short for {count} records (24 bytes each at least)"
        if problem is not None:
            exc = _error(problem, fatal=False, opaque=opaque, too_large=length > self._max_batch)
            raise self._reject_body(eol, length, exc)
        body = self._take_body(eol, length)
        if body is None:
            return NEED_DATA
        return _new_putm(topic, partition, count, body, checksum, opaque)

    def _get(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        if toks[0] != b"get":
            if toks[0] == b"getm":
                _exact_tokens(toks, 7, "getm", line)
                cmd, new = "getm", _new_getm
            else:
                _expect(toks[0], b"get")
        else:
            _need_tokens(toks, 7, "get", line)
            cmd, new = "get", _new_get
        topic = self._name(toks[1])
        group = self._name(toks[2])
        partition = _int(toks[3], "partition", cmd)
        offset = _int64(toks[4], "offset", cmd)
        max_size = _int(toks[5], "maxSize", cmd)
        opaque = _int(toks[6], "opaque", cmd)
        self._pos = eol + 2
        return new(topic, group, partition, offset, max_size, opaque)

    def _offset(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        _expect(toks[0], b"offset")
        _need_tokens(toks, 6, "offset", line)
        topic = self._name(toks[1])
        group = self._name(toks[2])
        partition = _int(toks[3], "partition", "offset")
        offset = _int64(toks[4], "offset", "offset")
        opaque = _int(toks[5], "opaque", "offset")
        self._pos = eol + 2
        return _new_offset(topic, group, partition, offset, opaque)

    def _s(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        if toks[0] == b"stats":
            item = _text(toks[1]) if len(toks) >= 2 else ""
            opaque = _int(toks[2], "opaque", "stats") if len(toks) >= 3 else OPAQUE_DEFAULT
            self._pos = eol + 2
            return _new_stats(item, opaque)
        return self._sync(toks, line, eol)

    def _sync(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        _expect(toks[0], b"sync")
        ntok = len(toks)
        _need_tokens(toks, 4, "sync", line)
        length = self._length(toks[3], "sync", self._max_body)
        if ntok not in (7, 8):
            raise _error(f"Invalid Sync command: {ntok} tokens, expected 7 or 8: {_snip(line)}")
        topic = self._name(toks[1])
        partition = _int(toks[2], "partition", "sync")
        flag = _int(toks[4], "flag", "sync")
        msg_id = _int64(toks[5], "msgId", "sync")
        checksum = _int(toks[6], "checksum", "sync") if ntok == 8 else -1
        opaque = _int(toks[ntok - 1], "opaque", "sync")
        data = self._message_body(eol, length, "sync", opaque)
        if data is None:
            return NEED_DATA
        return _new_sync(topic, partition, data, flag, msg_id, checksum, opaque)

    def _v(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        if toks[0] == b"value":
            return self._value(toks, line, eol)
        opaque = _int(toks[1], "opaque", "version") if len(toks) >= 2 else OPAQUE_DEFAULT
        self._pos = eol + 2
        return _new_version(opaque)

    def _quit(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        self._pos = eol + 2
        return _QUIT

    def _transaction(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        _expect(toks[0], b"transaction")
        ntok = len(toks)
        _need_tokens(toks, 4, "transaction", line)
        tx_key = _tx_key(toks[1], "transaction")
        tx_type = _text(toks[3])
        if tx_type not in TRANSACTION_TYPES:
            raise _error(
                f"bad transaction type {_snip(toks[3])}, expected one of {', '.join(sorted(TRANSACTION_TYPES))}"
            )
        session_id = self._name(toks[2])
        timeout = 0
        qualifier = None
        if ntok == 7:
            timeout = _int(toks[4], "timeout", "transaction")
            qualifier = _text(toks[5])
        elif ntok == 6:
            slot = toks[4]
            # commons-lang 2 StringUtils.isNumeric: all digits, and true for "" (which then
            # fails Integer.valueOf, so an empty slot is an error as in MetaQ).
            if not slot or slot.isdigit():
                timeout = _int(slot, "timeout", "transaction")
            else:
                qualifier = _text(slot)
        elif ntok != 5:
            raise _error(
                f"Invalid transaction command: {ntok} tokens, expected 5, 6 or 7: {_snip(line)}"
            )
        opaque = _int(toks[ntok - 1], "opaque", "transaction")
        self._pos = eol + 2
        return _new_transaction(tx_key, session_id, tx_type, timeout, qualifier, opaque)

    def _r(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        if toks[0] != b"replicate":
            return self._result(toks, line, eol)
        try:
            replica, epoch, slot, slots, wait_ms, max_bytes, length, opaque = \
                parse_replicate_line(toks)
        except ProtocolError as exc:
            raise _error(f"{exc}: {_snip(line)}") from None
        if length > self._max_batch:
            raise self._reject_body(eol, length, _error(
                f"replicate body of {length} bytes exceeds {self._max_batch}", fatal=False,
                opaque=opaque, too_large=True))
        body = self._take_body(eol, length)
        if body is None:
            return NEED_DATA
        return ReplicateCommand(replica, epoch, slot, slots, wait_ms, max_bytes, bytes(body),
                                opaque)

    def _admin(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        _expect(toks[0], b"admin")
        _need_tokens(toks, 3, "admin", line)
        if not toks[1]:
            raise _error(f"empty verb in admin: {_snip(line)}")
        verb = _text(toks[1])
        args = tuple(_text(t) for t in toks[2:-1])
        opaque = _int(toks[-1], "opaque", "admin")
        self._pos = eol + 2
        return _new_admin(verb, args, opaque)


_REQUEST_DISPATCH = {
    ord("p"): RequestDecoder._put,
    ord("g"): RequestDecoder._get,
    ord("t"): RequestDecoder._transaction,
    ord("r"): RequestDecoder._r,
    ord("v"): RequestDecoder._v,
    ord("s"): RequestDecoder._s,
    ord("o"): RequestDecoder._offset,
    ord("q"): RequestDecoder._quit,
    ord("a"): RequestDecoder._admin,
}


_TAIL_CHARS = b"0123456789- "


def _extend_put_run(run: PutRun, buf: bytes, pos: int, have: int, prefix: bytes, length: int,
                    copy_max: int, room: int) -> int:
    """Append to ``run`` the puts at ``pos`` whose line starts with ``prefix`` (``put <topic>
    <partition> <length> <flag> ``), stopping at anything else; returns the new position.

    Only the line's tail (``[<checksum> ]<opaque>``) differs between such puts. The loop only
    finds the lines and slices the bodies; the tails are checked and parsed together afterwards
    (one ``translate`` proves they hold nothing but digits, '-' and spaces, so ``int`` sees
    exactly what Java's ``parseInt`` accepts). If any tail is unusual the run stops before it and
    the general path decodes it.
    """
    datas, tails = [], []
    start = pos
    startswith = buf.startswith
    find = buf.find
    plen = len(prefix)
    view = memoryview(buf) if length > copy_max else None
    while room > 0 and startswith(prefix, pos):
        tail_start = pos + plen
        eol = find(b"\r\n", tail_start, tail_start + 24)
        if eol < 0:
            break
        end = eol + 2 + length
        if end > have:
            break
        tails.append(buf[tail_start:eol])
        datas.append(buf[eol + 2 : end] if view is None else view[eol + 2 : end])
        room -= 1
        pos = end
    if not tails:
        return pos
    parsed = _parse_tails(tails)
    if parsed is None:  # something unusual: one by one, up to the first odd tail
        checksums, opaques = [], []
        pos = start
        for i, tail in enumerate(tails):
            one = _parse_tails([tail])
            if one is None:
                del datas[i:]
                break
            pos += plen + len(tail) + 2 + length
            checksums += one[0]
            opaques += one[1]
        parsed = checksums, opaques
    run.datas.extend(datas)
    run.checksums.extend(parsed[0])
    run.opaques.extend(parsed[1])
    return pos


def _parse_tails(tails: list[bytes]) -> tuple[list[int], list[int]] | None:
    """(checksums, opaques) of put-line tails ``"<checksum> <opaque>"`` or ``"<opaque>"``, all of
    one form; None if any is not two (or one) Java ints."""
    joined = b" ".join(tails)
    if joined.translate(None, _TAIL_CHARS):
        return None
    tokens = joined.split(b" ")
    n = len(tails)
    if len(tokens) == 2 * n and tokens[0::2].count(b"-1") == n and joined.count(b" ") == 2 * n - 1:
        # the usual 7-token form without checksum: only the opaques need parsing
        try:
            opaques = list(map(int, tokens[1::2]))
        except ValueError:
            return None
        if min(opaques) < -2147483648 or max(opaques) > 2147483647:
            return None
        return [-1] * n, opaques
    try:
        numbers = list(map(int, tokens))
    except ValueError:
        return None
    if not numbers or min(numbers) < -2147483648 or max(numbers) > 2147483647:
        return None
    if len(numbers) == 2 * n:
        checksums, opaques = numbers[0::2], numbers[1::2]
        if joined.count(b" ") != 2 * n - 1:
            return None
        return checksums, opaques
    if len(numbers) == n:
        return [-1] * n, numbers
    return None  # the two forms mixed in one run: the general path takes them one by one


class ResponseDecoder(_Decoder):
    """Client side: decodes ``result``, ``value`` and ``values`` replies; anything else is a
    fatal ``ProtocolError`` (a broker never sends requests).

    Parameters: ``max_line_bytes``; ``max_body_bytes`` the largest reply body accepted (above:
    fatal); ``copy_body_bytes_max`` as for ``RequestDecoder``.
    """

    __slots__ = ()

    def __init__(
        self,
        max_line_bytes: int = limits.LINE_BYTES_MAX,
        max_body_bytes: int = REPLY_BODY_BYTES_MAX_DEFAULT,
        *,
        copy_body_bytes_max: int = BODY_COPY_BYTES_MAX_DEFAULT,
    ) -> None:
        frame = max(max_body_bytes, 1)
        super().__init__(max_line_bytes, max_body_bytes, max_body_bytes, frame, copy_body_bytes_max)
        self._dispatch = _RESPONSE_DISPATCH

    def _read_into(self, out: list[Any], limit: int) -> None:
        append = out.append
        match_result = _RESULT_FAST.match
        copy_max = self._copy_max
        max_body = self._max_body
        new_result = _new_result
        decode_one = self._decode_one
        buf = self._buf
        pos = self._pos
        have = len(buf)
        count = len(out)
        while count < limit:
            if pos >= have:
                self._pos = pos
                return
            if buf[pos] == 114:  # "r"
                m = match_result(buf, pos)
                if m is not None:
                    code_b, length_b, opaque_b = m.groups()
                    length = int(length_b)
                    opaque = int(opaque_b)
                    start = m.end()
                    end = start + length
                    if length <= max_body and end <= have and -2147483649 < opaque < 2147483648:
                        body = buf[start:end] if length <= copy_max else memoryview(buf)[start:end]
                        append(new_result(int(code_b), body, opaque))
                        count += 1
                        pos = end
                        continue
            self._pos = pos
            cmd = decode_one()
            if cmd is NEED_DATA:
                return
            append(cmd)
            count += 1
            buf = self._buf
            pos = self._pos
            have = len(buf)
        self._pos = pos

    def _unknown(self, toks: list[bytes], line: bytes) -> Any:
        raise _error(f"expected a result, value or values reply, got {_snip(line)}")

    def _v(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        if toks[0] == b"value":
            return self._value(toks, line, eol)
        if toks[0] == b"values":
            return self._values(toks, line, eol)
        raise _error(f"Expect value,but was {_snip(toks[0])}")

    def _values(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        _exact_tokens(toks, 5, "values", line)
        data_length = self._length(toks[1], "values", self._max_body)
        count = _int(toks[2], "count", "values", 0, limits.BATCH_RECORDS_MAX)
        checksum = _int(toks[3], "checksum", "values", 0, 2**64 - 1)
        opaque = _int(toks[4], "opaque", "values")
        total = 4 * count + data_length
        if total > self._max_body:
            raise _error(f"values body of {total} bytes exceeds the limit {self._max_body}", opaque=opaque)
        body = self._take_body(eol, total)
        if body is None:
            return NEED_DATA
        index_end = eol + 2 + 4 * count
        index = self._buf[eol + 2 : index_end]
        data = self._body(index_end, self._pos)
        record_bytes = int(np.frombuffer(index, dtype=">u4").sum(dtype=np.int64)) + limits.RECORD_HEADER_BYTES * count
        if record_bytes != data_length:
            raise _error(
                f"values index describes {record_bytes} bytes of records, the header says {data_length}",
                opaque=opaque,
            )
        return _new_values(data_length, count, checksum, index, data, opaque)


_RESPONSE_DISPATCH = {
    ord("r"): ResponseDecoder._result,
    ord("v"): ResponseDecoder._v,
}


# ---- reply bodies ---------------------------------------------------------------------------


def parse_putm_ok(body: bytes | bytearray | memoryview) -> tuple[int, int, np.ndarray]:
    """Decode a putm success body into ``(partition, first_offset, ids)`` (ids: int64 ndarray).

    Raises ``ProtocolError`` if the body is malformed.
    """
    raw = bytes(body[:64]) if not isinstance(body, bytes) else body
    nl = raw.find(b"\n", 0, 64)
    if nl < 0:
        raise _error(f"putm reply without header line: {_snip(raw)}")
    parts = raw[:nl].split(b" ")
    if len(parts) != 3:
        raise _error(f"putm reply header needs 3 fields: {_snip(raw[:nl])}")
    partition = _int(parts[0], "partition", "putm reply")
    first_offset = _int64(parts[1], "offset", "putm reply")
    count = _int(parts[2], "count", "putm reply", 0, INT32_MAX)
    ids = memoryview(body)[nl + 1 :]
    if len(ids) != 8 * count:
        raise _error(f"putm reply carries {len(ids)} id bytes for {count} ids, expected {8 * count}")
    return partition, first_offset, np.frombuffer(ids, dtype=">i8").astype(np.int64)
