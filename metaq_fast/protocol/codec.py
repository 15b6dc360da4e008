"""Sans-IO codec of the MetaQ text protocol: bytes in, command objects out, and back to bytes.

Responsibility: framing and parsing of requests (``RequestDecoder``, broker side) and replies
(``ResponseDecoder``, client side) exactly as MetaQ's ``MetamorphosisWireFormatType`` decodes
them, plus encoders for every command and the fast reply helpers the broker uses.
Allowed imports: stdlib, numpy, ``metaq_fast.errors``, ``metaq_fast.limits`` and
``.commands``. No socket, asyncio or kazoo: callers feed bytes and send what ``encode`` returns.

Decoding rules (reference section 1 items 2-6, section 2):

* A command is one line ended by ``\\r\\n`` (a bare ``\\n`` is not a terminator), split on single
  spaces with Java ``Pattern.split`` semantics (interior and leading empty tokens kept, trailing
  ones dropped), dispatched on the first byte of the first token: ``p`` put (``putm``), ``g``
  get (``getm``), ``t`` transaction, ``r`` result, ``v`` value or else *version*, ``s`` stats
  or else *sync*, ``o`` offset, ``q`` quit (any token), ``a`` admin (ours). Except for version
  and quit the token must equal the command name (``Expect <name>,but was <token>``).
* The dispatch byte is, as in Java's ``(byte) sa[0].charAt(0)``, the low byte of the first
  UTF-16 unit, so a few non-ASCII first characters select quit or version (U+0171, U+0176).
* Text tokens are UTF-8 with malformed bytes replaced (U+FFFD), as Java's ``new String``.
  Transaction keys are validated and canonicalised (``commands.canonical_tx_key``).
* Integers are Java ``Integer.parseInt`` (int32) except offsets and message ids (int64):
  optional sign, any leading zeros, ASCII digits only (Java also takes other Unicode digits;
  no client sends them).
* A body shorter than its length: nothing is consumed, the decoder waits.
* ``version`` and ``stats`` without opaque get 2147483647; ``get``, ``offset``, ``result``,
  ``value``, ``version``, ``stats`` ignore tokens after the ones they use; ``put`` takes 6, 7 or
  8 tokens (7: the 6th token is a checksum if it starts with a digit or ``-``, else a
  transaction key); ``sync`` 7 or 8; ``transaction`` 5, 6 or 7 (6: the 5th token is a timeout
  if it is all digits - an empty token counts as digits and fails, as commons-lang 2 did).
  Our extensions take exactly their token count. A ``result`` or ``value`` sent to the broker
  is decoded (MetaQ decodes it as a reply and drops it); the broker should ignore it.

Errors: every rejection is a ``ProtocolError`` saying what was expected and quoting at most 64
bytes received. MetaQ closes the connection on any decode error without answering, so decode
errors are ``fatal``; after one the decoder refuses further use. Checks we add where the framing
is still intact - a body within the framing limit but above the maximum message size, a ``putm``
whose count and length disagree - are not fatal: the command (line and body, the body skipped
as it arrives, never buffered) is consumed, and the error carries ``opaque`` so the broker can
answer ``result 400`` and go on. Every ``ProtocolError`` raised here has the attributes
``opaque`` (int, or None when unknown) and ``position`` (stream offset of the bad command).

Strategy of the decoder
-----------------------
* Buffer: one immutable ``bytes`` object ``_buf`` and a read position ``_pos``. ``feed`` adopts
  a chunk as the buffer when nothing is left over (no copy) and otherwise appends it to a list
  ``_tail``. The tail is joined with the unread rest (one copy, which also compacts) only when
  it can complete something: at once while a line is incomplete (lines are at most
  ``max_line_bytes``, so repeated joins stay cheap), and only when enough bytes are there while
  a body of known length is missing (``_want_end``), so a large body arriving in small chunks is
  copied once, not quadratically.
* Bodies are slices of ``_buf``: ``bytes`` copies up to ``copy_body_bytes_max`` (cheaper than a
  view for small bodies and pins nothing), read-only ``memoryview`` slices above (zero-copy).
  Because ``_buf`` is immutable and never written to, a view stays valid for as long as it is
  referenced; it keeps the whole receive chunk alive meanwhile.
* The CRLF search is bounded to ``max_line_bytes + 2`` bytes, so an over-long line is rejected
  as soon as that many bytes are buffered, whatever the chunking.
* Fast path: ``read_commands`` first tries precompiled regexes for the common ``put`` and
  ``get`` lines. They accept only a strict subset of what the general path accepts (ASCII
  digits, no ``+``, digit counts that cannot overflow int32 or are range-checked, bounded line
  length), build identical objects, and leave everything else to the general path, which is
  the specification. Names and the ``topic partition length flag`` part of put lines are
  memoised per decoder (bounded dicts), so a put usually costs one regex match, one dict
  lookup and two ``int()`` calls before the object is built.
* Objects are built with ``commands._builder`` (no validation, no frozen ``__setattr__``).
* One error exit: parsing helpers raise ``ProtocolError``; ``_fail`` records the position,
  marks the decoder broken when fatal and re-raises. ``read_commands`` returns the commands
  decoded before an error first and raises it on the next call, so replies stay in order.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import numpy as np

from metaq_fast import limits
from metaq_fast.errors import SUCCESS, MessageTooLargeError, ProtocolError
from metaq_fast.protocol.commands import (
    PutRun,
    BATCH_RECORD_OVERHEAD_BYTES,
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    OPAQUE_DEFAULT,
    TRANSACTION_TYPES,
    UINT64_MAX,
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
    _builder,
    canonical_tx_key,
)

__all__ = [
    "BODY_COPY_BYTES_MAX_DEFAULT",
    "FRAME_BYTES_MAX_DEFAULT",
    "NEED_DATA",
    "REPLY_BODY_BYTES_MAX_DEFAULT",
    "RequestDecoder",
    "ResponseDecoder",
    "encode",
    "encode_put_ok",
    "encode_put_ok_many",
    "encode_putm_ok",
    "encode_result",
    "encode_stats_body",
    "encode_value_header",
    "encode_values_header",
    "parse_putm_ok",
]

# ---- defaults (candidates for limits.py) --------------------------------------------------------

# Bodies up to this size are copied out of the receive buffer as bytes; larger ones are
# memoryview slices of it (zero-copy, but they keep the whole chunk alive).
BODY_COPY_BYTES_MAX_DEFAULT = 64 * 1024
# The hard framing limit: a declared body length above this is not skipped but fatal (the
# stream is garbage or hostile). Same bound as the bytes a connection may have pending.
FRAME_BYTES_MAX_DEFAULT = limits.CONNECTION_PENDING_BYTES_MAX
# Largest reply body a client accepts (a values reply carries a whole batch plus its index).
REPLY_BODY_BYTES_MAX_DEFAULT = limits.BATCH_BYTES_MAX_DEFAULT + 4 * 1024 * 1024

_SNIPPET_BYTES_MAX = 64
# Bounded memo tables of the fast path.
_NAME_CACHE_ENTRIES_MAX = 1024
_PUT_KEY_CACHE_ENTRIES_MAX = 4096


class _NeedData:
    """Type of ``NEED_DATA``: more bytes are needed before the next command can be decoded."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __reduce__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

_new_put = _builder(PutCommand)
_new_get = _builder(GetCommand)
_new_offset = _builder(OffsetCommand)
_new_stats = _builder(StatsCommand)
_new_version = _builder(VersionCommand)
_new_sync = _builder(SyncCommand)
_new_transaction = _builder(TransactionCommand)
_new_result = _builder(ResultReply)
_new_value = _builder(ValueReply)
_new_putm = _builder(PutBatchCommand)
_new_getm = _builder(GetBatchCommand)
_new_values = _builder(ValuesReply)
_new_admin = _builder(AdminCommand)
_QUIT = QuitCommand()

_JAVA_INT = re.compile(rb"[+-]?[0-9]+")
_CRLF = b"\r\n"

# Fast-path lines (see Strategy). Groups of _PUT_FAST: "topic partition length flag" (the
# memo key), checksum (None in the 6-token form), opaque.
_PUT_FAST = re.compile(
    rb"put ([^ \r\n]+ -?[0-9]{1,9} [0-9]{1,9} -?[0-9]{1,9}) (?:(-?[0-9]{1,10}) )?(-?[0-9]{1,10})\r\n"
)
# Most bytes a _PUT_FAST line has after its key group, CRLF included.
_PUT_FAST_TAIL_BYTES_MAX = len(b" -1234567890 -1234567890\r\n")
_GET_FAST = re.compile(
    rb"get ([^ \r\n]+) ([^ \r\n]+) (-?[0-9]{1,9}) (-?[0-9]{1,18}) (-?[0-9]{1,10}) (-?[0-9]{1,10})\r\n"
)
_RESULT_FAST = re.compile(rb"result ([0-9]{3}) ([0-9]{1,9}) (-?[0-9]{1,10})\r\n")


def _snip(data: bytes | bytearray | memoryview) -> str:
    """Quote at most 64 bytes of received data for an error message."""
    raw = bytes(data[: _SNIPPET_BYTES_MAX + 1])
    text = repr(raw[:_SNIPPET_BYTES_MAX].decode("utf-8", "backslashreplace"))
    return text + "..." if len(raw) > _SNIPPET_BYTES_MAX else text


def _text(token: bytes) -> str:
    # Java decodes the line with new String(bytes, "utf-8"): malformed input is replaced.
    return token.decode("utf-8", "replace")


def _error(message: str, *, fatal: bool = True, opaque: int | None = None, too_large: bool = False) -> ProtocolError:
    cls = MessageTooLargeError if too_large else ProtocolError
    exc = cls(message, fatal=fatal)
    exc.opaque = opaque  # type: ignore[attr-defined]
    exc.position = None  # type: ignore[attr-defined]
    return exc


def _java_dispatch_byte(token: bytes) -> int:
    """MetaQ dispatches on ``(byte) sa[0].charAt(0)``: the low byte of the first UTF-16 unit.

    So a non-ASCII first character can select a command (U+0171 quits, U+0176 is a version
    request); replicated because it is what MetaQ does, and it is harmless.
    """
    code = ord(token[:4].decode("utf-8", "replace")[0])
    if code >= 0x10000:
        code = 0xD800 + ((code - 0x10000) >> 10)  # high surrogate
    return code & 0xFF


def _java_int(token: bytes) -> int | None:
    """The value of a Java integer token (sign, ASCII digits, any number of leading zeros), or
    None. Long tokens are trimmed first so that int() never meets its digit limit."""
    if not _JAVA_INT.fullmatch(token):
        return None
    if len(token) > 20:
        sign = token[:1] if token[:1] in (b"+", b"-") else b""
        digits = token[len(sign) :].lstrip(b"0") or b"0"
        if len(digits) > 20:
            return None  # beyond every range we parse (uint64 has 20 digits)
        token = sign + digits
    return int(token)


def _int(token: bytes, what: str, cmd: str, lo: int = INT32_MIN, hi: int = INT32_MAX) -> int:
    value = _java_int(token)
    if value is not None and lo <= value <= hi:
        return value
    kind = "an int32" if (lo, hi) == (INT32_MIN, INT32_MAX) else "an int64" if (lo, hi) == (INT64_MIN, INT64_MAX) else f"{lo}..{hi}"
    raise _error(f"bad {what} {_snip(token)} in {cmd}, expected {kind}")


def _int64(token: bytes, what: str, cmd: str) -> int:
    return _int(token, what, cmd, INT64_MIN, INT64_MAX)


def _tx_key(token: bytes, cmd: str) -> str:
    try:
        return canonical_tx_key(_text(token))
    except ValueError as exc:
        raise _error(f"bad transaction key {_snip(token)} in {cmd}: {exc}") from None


def _expect(token: bytes, name: bytes) -> None:
    if token != name:
        raise _error(f"Expect {name.decode()},but was {_snip(token)}")


def _need_tokens(toks: list[bytes], count: int, cmd: str, line: bytes) -> None:
    if len(toks) < count:
        raise _error(f"{cmd} needs at least {count} tokens, got {len(toks)}: {_snip(line)}")


def _exact_tokens(toks: list[bytes], count: int, cmd: str, line: bytes) -> None:
    if len(toks) != count:
        raise _error(f"{cmd} needs {count} tokens, got {len(toks)}: {_snip(line)}")


class _Decoder:
    """Buffering, line framing and the error exit shared by both decoders."""

    __slots__ = (
        "_buf",
        "_pos",
        "_base",
        "_tail",
        "_tail_len",
        "_want_end",
        "_skip",
        "_pending_error",
        "_broken",
        "_max_line",
        "_max_body",
        "_max_batch",
        "_frame_max",
        "_copy_max",
        "_names",
        "_puts",
        "_dispatch",
    )

    def __init__(
        self,
        max_line_bytes: int,
        max_body_bytes: int,
        max_batch_bytes: int,
        frame_bytes_max: int,
        copy_body_bytes_max: int,
    ) -> None:
        if max_line_bytes < 64:
            raise ValueError(f"max_line_bytes={max_line_bytes}, expected >= 64")
        if not 0 <= max_body_bytes <= frame_bytes_max or not 0 <= max_batch_bytes <= frame_bytes_max:
            raise ValueError("max_body_bytes and max_batch_bytes must be in 0..frame_bytes_max")
        if frame_bytes_max > INT32_MAX:
            raise ValueError("frame_bytes_max above 2**31-1 (lengths are Java ints)")
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]
        self._tail: list[bytes] = []
        self._tail_len = 0
        # Stream offset up to which bytes are needed before decoding can progress (0: unknown).
        # Absolute, so it cannot go stale when the fast path consumes commands behind it.
        self._want_end = 0
        self._skip = 0  # body bytes of a rejected command still to be discarded
        self._pending_error: ProtocolError | None = None
        self._broken: ProtocolError | None = None
        self._max_line = max_line_bytes
        self._max_body = max_body_bytes
        self._max_batch = max_batch_bytes
        self._frame_max = frame_bytes_max
        self._copy_max = copy_body_bytes_max
        self._names: dict[bytes, str] = {}
        self._puts: dict[bytes, tuple[str, int, int, int]] = {}

    # ---- public ----------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes. ``bytes`` are adopted without copy; other buffers are copied
        (the caller may reuse them). Bytes of a rejected body are discarded here."""
        if self._broken is not None:
            raise self._refuse()
        if self._skip:
            n = len(data)
            if n <= self._skip:
                self._skip -= n
                self._base += n
                return
            data = memoryview(data)[self._skip :]
            self._base += self._skip
            self._skip = 0
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self._pos >= len(self._buf) and not self._tail:
            self._base += len(self._buf)
            self._buf = data
            self._pos = 0
        else:
            self._tail.append(data)
            self._tail_len += len(data)

    @property
    def buffered_bytes(self) -> int:
        """Bytes fed but not yet consumed (the caller bounds this, e.g. pauses reading)."""
        return len(self._buf) - self._pos + self._tail_len

    @property
    def skipping_bytes(self) -> int:
        """Bytes of a rejected body still to be discarded as they arrive."""
        return self._skip

    def next_command(self) -> Any:
        """The next decoded command, or ``NEED_DATA``. Raises ``ProtocolError``."""
        if self._pending_error is not None or self._broken is not None:
            raise self._take_error()
        if not self._fill():
            return NEED_DATA
        try:
            return self._decode_one()
        except ProtocolError as exc:
            raise self._fail(exc) from None

    def read_commands(self, limit: int | None = None) -> list[Any]:
        """Every command that can be decoded now (at most ``limit``), in stream order.

        An error is raised only when it is the first thing left in the stream: commands decoded
        before it are returned first and the error comes with the next call.
        """
        if self._pending_error is not None or self._broken is not None:
            raise self._take_error()
        out: list[Any] = []
        if not self._fill():
            return out
        try:
            self._read_into(out, INT32_MAX if limit is None else limit)
        except ProtocolError as exc:
            exc = self._fail(exc)
            if not out:
                raise exc from None
            self._pending_error = exc
        return out

    # ---- buffer ----------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Join the tail when it can complete something; False if decoding cannot progress."""
        end = self._base + len(self._buf)
        if not self._tail:
            return self._pos < len(self._buf) and end >= self._want_end
        if end + self._tail_len < self._want_end:
            return False
        buf, pos, tail = self._buf, self._pos, self._tail
        if pos >= len(buf) and len(tail) == 1:
            joined = tail[0]
        else:
            joined = b"".join([memoryview(buf)[pos:], *tail])
        self._base += pos
        self._buf = joined
        self._pos = 0
        tail.clear()
        self._tail_len = 0
        return True

    def _body(self, start: int, end: int) -> bytes | memoryview:
        if end - start <= self._copy_max:
            return self._buf[start:end]
        return memoryview(self._buf)[start:end]

    def _take_body(self, eol: int, length: int) -> bytes | memoryview | None:
        """The body after the line ending at ``eol``, consuming the command; None if incomplete."""
        start = eol + 2
        end = start + length
        if end > len(self._buf):
            self._want_end = self._base + end
            return None
        self._pos = end
        return self._body(start, end)

    def _reject_body(self, eol: int, length: int, exc: ProtocolError) -> ProtocolError:
        """Consume a rejected command whose framing is intact: its line now, its body as it
        arrives (discarded, never buffered). Returns ``exc`` for the caller to raise."""
        start = eol + 2
        end = start + length
        have = len(self._buf)
        if end <= have:
            self._pos = end
        else:
            self._pos = have
            self._skip = end - have
        return exc

    def _length(self, token: bytes, cmd: str, limit: int) -> int:
        """A body length token: int32 (fatal if not), >= 0 and within the framing limit (fatal),
        and ``limit`` for information in the message."""
        value = _java_int(token)
        if value is not None and 0 <= value <= self._frame_max:
            return value
        if value is None or value < 0 or value > INT32_MAX:
            raise _error(f"bad length {_snip(token)} in {cmd}, expected 0..{limit}")
        raise _error(f"length {value} in {cmd} exceeds the framing limit {self._frame_max}")

    def _name(self, token: bytes) -> str:
        name = self._names.get(token)
        if name is None:
            name = _text(token)
            if len(self._names) >= _NAME_CACHE_ENTRIES_MAX:
                self._names.clear()
            self._names[token] = name
        return name

    # ---- errors ----------------------------------------------------------------------------

    def _fail(self, exc: ProtocolError) -> ProtocolError:
        """The single error exit: stamp the position, break the decoder when fatal."""
        if getattr(exc, "position", None) is None:
            exc.position = self._base + self._pos  # type: ignore[attr-defined]
        if not hasattr(exc, "opaque"):
            exc.opaque = None  # type: ignore[attr-defined]
        if exc.fatal:
            self._broken = exc
            self._tail.clear()
            self._tail_len = 0
            self._buf = b""
            self._pos = 0
        return exc

    def _take_error(self) -> ProtocolError:
        exc = self._pending_error
        if exc is not None:
            self._pending_error = None
            return exc
        return self._refuse()

    def _refuse(self) -> ProtocolError:
        assert self._broken is not None
        exc = _error(f"decoder unusable after a fatal protocol error: {self._broken}")
        exc.position = self._broken.position  # type: ignore[attr-defined]
        return exc

    # ---- decoding ------------------------------------------------------------------------------

    def _read_into(self, out: list[Any], limit: int) -> None:
        append = out.append
        decode_one = self._decode_one
        while len(out) < limit:
            cmd = decode_one()
            if cmd is NEED_DATA:
                return
            append(cmd)

    def _line(self) -> tuple[list[bytes], bytes, int] | None:
        """Tokens, raw line and CRLF position of the line at ``_pos``; None if incomplete."""
        buf, pos = self._buf, self._pos
        eol = buf.find(_CRLF, pos, pos + self._max_line + 2)
        if eol < 0:
            have = len(buf) - pos
            if have > self._max_line and not (have == self._max_line + 1 and buf[-1] == 13):
                raise _error(
                    f"command line longer than {self._max_line} bytes without CRLF: {_snip(buf[pos:pos + 64])}"
                )
            self._want_end = 0
            return None
        line = buf[pos:eol]
        toks = line.split(b" ")
        if len(toks) > 1:
            while toks and not toks[-1]:
                toks.pop()
        if not toks:
            raise _error("blank command line (spaces only)")
        if not toks[0]:
            if len(toks) == 1:
                raise _error("empty command line")
            raise _error(f"command line starts with a space: {_snip(line)}")
        return toks, line, eol

    def _decode_one(self) -> Any:
        start = self._pos
        if start >= len(self._buf):
            return NEED_DATA
        try:
            parsed = self._line()
            if parsed is None:
                return NEED_DATA
            toks, line, eol = parsed
            first = toks[0][0]
            if first >= 0x80:
                first = _java_dispatch_byte(toks[0])
            handler = self._dispatch.get(first)
            if handler is None:
                return self._unknown(toks, line)
            return handler(self, toks, line, eol)
        except ProtocolError as exc:
            exc.position = self._base + start  # type: ignore[attr-defined]
            raise

    def _unknown(self, toks: list[bytes], line: bytes) -> Any:
        raise _error(f"unknown command {_snip(toks[0])}: {_snip(line)}")

    # ---- shared command parsers ------------------------------------------------------------------

    def _result(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        _expect(toks[0], b"result")
        _need_tokens(toks, 4, "result", line)
        length = self._length(toks[2], "result", self._max_body)
        code = _int(toks[1], "code", "result")
        opaque = _int(toks[3], "opaque", "result")
        if length > self._max_body:
            raise _error(f"result body of {length} bytes exceeds the limit {self._max_body}", opaque=opaque)
        body = self._take_body(eol, length)
        if body is None:
            return NEED_DATA
        return _new_result(code, body, opaque)

    def _value(self, toks: list[bytes], line: bytes, eol: int) -> Any:
        _need_tokens(toks, 3, "value", line)
        length = self._length(toks[1], "value", self._max_body)
        opaque = _int(toks[2], "opaque", "value")
        if length > self._max_body:
            raise _error(f"value of {length} bytes exceeds the limit {self._max_body}", opaque=opaque)
        data = self._take_body(eol, length)
        if data is None:
            return NEED_DATA
        return _new_value(data, opaque)


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
    ord("r"): RequestDecoder._result,
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


def encode_stats_body(lines: Iterable[str]) -> bytes:
    """``STATS\\r\\n`` + each line + ``\\r\\n`` + ``END\\r\\n`` (UTF-8)."""
    return b"STATS\r\n" + b"".join(line.encode("utf-8") + b"\r\n" for line in lines) + b"END\r\n"


# ---- vectorised put replies --------------------------------------------------------------------

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
