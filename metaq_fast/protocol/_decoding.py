"""Sans-IO decoding of the MetaQ text protocol, the common part: framing, the parsing helpers
and the rules both decoders follow (``_readers.py`` holds ``RequestDecoder`` and
``ResponseDecoder``).

Responsibility: framing and parsing of requests (``RequestDecoder``, broker side) and replies
(``ResponseDecoder``, client side) exactly as MetaQ's ``MetamorphosisWireFormatType`` decodes
them. Encoding is ``_writers.py`` (and ``_put_replies.py`` for batches of put replies), as h11
splits its readers and writers; ``protocol/__init__.py`` is the one public face.
Allowed imports: stdlib, numpy, ``metaq_fast.errors``, ``metaq_fast.limits`` and
``.commands``. No socket, asyncio or kazoo: callers feed bytes and act on the objects.

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
from typing import Any


from metaq_fast import limits
from metaq_fast.errors import MessageTooLargeError, ProtocolError
from metaq_fast.protocol.commands import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
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
