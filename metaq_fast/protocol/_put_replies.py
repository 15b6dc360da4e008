"""Many put replies at once: ``result 200`` frames for a whole batch, formatted with numpy.

Imports: numpy and protocol._writers only (sans-IO).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from metaq_fast.protocol._writers import encode_put_ok


_POW10 = np.array([10**k for k in range(1, 20)], dtype=np.uint64)
_HEAD_200 = np.frombuffer(b"result 200 ", dtype=np.uint8)
# encode_put_ok_many strategies by batch size (measured on the reference machine): below
# _MANY_FORMAT_MIN replies a loop of encode_put_ok; below _MANY_VECTOR_MIN one bytes %-format
# of the whole batch (lengths computed with numpy); from _MANY_VECTOR_MIN on, digits computed
# with numpy (its ~100 array operations only pay off on large batches).
_MANY_FORMAT_MIN = 64
_MANY_VECTOR_MIN = 8192


def _chars(values: np.ndarray) -> np.ndarray:
    """Decimal width of each int64 (sign included)."""
    return np.searchsorted(_POW10, np.abs(values).view(np.uint64), side="right") + 1 + (values < 0)


def _put_digits(out: np.ndarray, col: int, width: int, values: np.ndarray) -> None:
    """Write ``values`` (int64) right-aligned in ``out[col:col+width, :]`` (one row per char
    position, one column per reply); cells left of the number (and its sign) become 0."""
    negative = values < 0
    magnitude = np.abs(values).view(np.uint64)
    rest = magnitude.copy()
    for k in range(width - 1, -1, -1):
        quotient = rest // 10
        out[col + k] = (rest - quotient * 10).astype(np.uint8) + 48
        rest = quotient
    block = out[col : col + width]
    lead = width - _chars(values)  # cells before the first char of each number
    block[np.arange(width)[:, None] < lead[None, :]] = 0
    if negative.any():
        cols = np.flatnonzero(negative)
        block[lead[cols], cols] = 45  # "-"


def _width(values: np.ndarray) -> int:
    return int(_chars(values).max()) if len(values) else 1


_LOW_DIGITS = 6
_LOW_SCALE = 10**_LOW_DIGITS


def _split_common_head(values: np.ndarray) -> tuple[bytes, np.ndarray, bytes]:
    """(leading digits shared by every value, what remains, its format) for ``values`` >= 0.

    A batch's message ids (19 digits) and offsets differ only in their last digits; writing the
    shared head into the template leaves small ints for ``%`` to format (measured: a 19-digit
    int costs several times a 6-digit one to convert and to format)."""
    low, high = int(values.min()), int(values.max())
    if low >= _LOW_SCALE and low // _LOW_SCALE == high // _LOW_SCALE:
        head = low // _LOW_SCALE
        return b"%d" % head, values - head * _LOW_SCALE, b"%%0%dd" % _LOW_DIGITS
    return b"", values, b"%d"


def encode_put_ok_many(
    msg_ids: Sequence[int] | np.ndarray,
    partition: int | Sequence[int] | np.ndarray,
    offsets: Sequence[int] | np.ndarray,
    opaques: Sequence[int] | np.ndarray,
) -> bytes:
    """Concatenated ``encode_put_ok`` replies for many puts at once.

    ``partition`` is one int for all replies or one per reply. The result equals
    ``b"".join(encode_put_ok(i, p, o, q) ...)``; the work per reply is done in C (one bytes
    format of the whole batch, or numpy for large batches).
    """
    ids = np.asarray(msg_ids, dtype=np.int64)
    offs = np.asarray(offsets, dtype=np.int64)
    opqs = np.asarray(opaques, dtype=np.int64)
    parts = np.asarray(partition, dtype=np.int64)
    n = len(ids)
    if len(offs) != n or len(opqs) != n or (parts.ndim and len(parts) != n):
        raise ValueError("msg_ids, offsets, opaques (and a partition array) must have one entry per reply")
    if n < _MANY_FORMAT_MIN:
        if parts.ndim:
            return b"".join(map(encode_put_ok, ids.tolist(), parts.tolist(), offs.tolist(), opqs.tolist()))
        p = int(parts)
        return b"".join([encode_put_ok(i, p, o, q) for i, o, q in zip(ids.tolist(), offs.tolist(), opqs.tolist())])
    if n < _MANY_VECTOR_MIN:
        if parts.ndim:
            values = np.empty((n, 5), dtype=np.int64)
            values[:, 0] = _chars(ids) + _chars(parts) + _chars(offs) + 2
            values[:, 1] = opqs
            values[:, 2] = ids
            values[:, 3] = parts
            values[:, 4] = offs
            return (b"result 200 %d %d\r\n%d %d %d" * n) % tuple(values.ravel().tolist())
        middle = b" %d " % int(parts)
        body_len = _chars(ids) + _chars(offs) + len(middle)
        first_len = int(body_len[0])
        if int(body_len.min()) == int(body_len.max()):
            # Usual case (ids and offsets of a batch have the same widths): the length is a
            # constant of the template, one substitution fewer per reply.
            values = np.empty((n, 3), dtype=np.int64)
            values[:, 0] = opqs
            id_head, values[:, 1], id_low = _split_common_head(ids)
            off_head, values[:, 2], off_low = _split_common_head(offs)
            template = b"result 200 %d %%d\r\n%s%s%s%s%s" % (
                first_len, id_head, id_low, middle.replace(b"%", b"%%"), off_head, off_low)
            return (template * n) % tuple(values.ravel().tolist())
        values = np.empty((n, 4), dtype=np.int64)
        values[:, 0] = body_len
        values[:, 1] = opqs
        values[:, 2] = ids
        values[:, 3] = offs
        return ((b"result 200 %%d %%d\r\n%%d%s%%d" % middle) * n) % tuple(values.ravel().tolist())
    if parts.ndim == 0:
        parts = np.full(n, int(parts), dtype=np.int64)
    body_len = _chars(ids) + _chars(parts) + _chars(offs) + 2
    w_len, w_opq, w_id, w_part, w_off = (_width(v) for v in (body_len, opqs, ids, parts, offs))
    # Char-position-major layout (one row per column of text) keeps the digit writes
    # contiguous; transposed once at the end.
    height = len(_HEAD_200) + w_len + 1 + w_opq + 2 + w_id + 1 + w_part + 1 + w_off
    out = np.empty((height, n), dtype=np.uint8)
    row = len(_HEAD_200)
    out[:row] = _HEAD_200[:, None]
    _put_digits(out, row, w_len, body_len)
    row += w_len
    out[row] = 32
    row += 1
    _put_digits(out, row, w_opq, opqs)
    row += w_opq
    out[row] = 13
    out[row + 1] = 10
    row += 2
    _put_digits(out, row, w_id, ids)
    row += w_id
    out[row] = 32
    row += 1
    _put_digits(out, row, w_part, parts)
    row += w_part
    out[row] = 32
    row += 1
    _put_digits(out, row, w_off, offs)
    flat = out.T.ravel()  # one copy into reply order
    return flat[flat != 0].tobytes()
