"""Properties of the codec (hypothesis): decode(encode(x)) == x for every command type; any
split of a stream of valid commands decodes to the same commands; the fast path and the general
path agree on arbitrary near-valid lines; garbage and mutated frames raise only ProtocolError."""

from __future__ import annotations

import contextlib
import re
import struct

import numpy as np
from hypothesis import HealthCheck, example, given, settings, strategies as st

from metaq_fast import limits
from metaq_fast.errors import ProtocolError
from metaq_fast.protocol import (
    NEED_DATA,
    AdminCommand,
    GetBatchCommand,
    GetCommand,
    OffsetCommand,
    PutBatchCommand,
    PutCommand,
    QuitCommand,
    RequestDecoder,
    ResponseDecoder,
    ResultReply,
    StatsCommand,
    SyncCommand,
    TRANSACTION_TYPES,
    TransactionCommand,
    ValueReply,
    ValuesReply,
    VersionCommand,
    encode,
    encode_put_ok,
    encode_put_ok_many,
)
from metaq_fast.protocol.commands import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, java_split

int32 = st.integers(INT32_MIN, INT32_MAX)
int64 = st.integers(INT64_MIN, INT64_MAX)
small_body = st.binary(max_size=300)
# A token: any text without space or CRLF (surrogates cannot be UTF-8 encoded).
_token_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters=" \r\n")
token = st.text(_token_chars, max_size=12)
name = st.one_of(st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789._-", min_size=1, max_size=20), token)
# Stats items and qualifiers must not be blank (the Java encoder drops blank ones).
_word_chars = st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters=" \r\n")
word = st.text(_word_chars, min_size=1, max_size=12).filter(lambda s: not s.isspace())
session = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=" \r\n:"), max_size=10)

tx_key = st.one_of(
    st.just("null"),
    st.builds(lambda s, n: f"TX:{s}:{n}", session, int32),
    st.builds(
        lambda f, g, b, q: f"XID:{f}:{g.hex()}:{b.hex()}:{q}",
        int32,
        st.binary(max_size=8),
        st.binary(max_size=8),
        session,
    ),
)


def transactions() -> st.SearchStrategy[TransactionCommand]:
    def build(key, sid, typ, timeout, qualifier, opaque):
        # Java quirk (17.12): with no timeout a digits-only qualifier reads back as a timeout.
        if qualifier is not None and timeout == 0 and qualifier.isdigit() and qualifier.isascii():
            qualifier = "q" + qualifier
        return TransactionCommand(key, sid, typ, timeout, qualifier, opaque)

    return st.builds(
        build,
        tx_key,
        session,
        st.sampled_from(sorted(TRANSACTION_TYPES)),
        st.integers(0, INT32_MAX),
        st.one_of(st.none(), word),
        int32,
    )


def batch_bodies(draw_count: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=24 * draw_count, max_size=24 * draw_count + 64)


@st.composite
def put_batches(draw) -> PutBatchCommand:
    count = draw(st.integers(1, 5))
    body = draw(batch_bodies(count))
    checksum = draw(st.one_of(st.just(-1), st.integers(0, 2**64 - 1)))
    return PutBatchCommand(draw(name), draw(int32), count, body, checksum, draw(int32))


@st.composite
def values_replies(draw) -> ValuesReply:
    records = draw(st.lists(st.binary(max_size=40), max_size=6))
    index = b"".join(struct.pack(">I", len(r)) for r in records)
    data = b"".join(draw(st.binary(min_size=20, max_size=20)) + r for r in records)
    return ValuesReply(len(data), len(records), draw(st.integers(0, 2**64 - 1)), index, data, draw(int32))


requests = st.one_of(
    st.builds(PutCommand, name, int32, small_body, int32, int32, st.one_of(st.none(), tx_key), int32),
    st.builds(PutCommand, name, int32, small_body, int32, st.just(-1), st.none(), int32),
    st.builds(GetCommand, name, name, int32, int64, int32, int32),
    st.builds(OffsetCommand, name, name, int32, int64, int32),
    st.builds(StatsCommand, st.one_of(st.just(""), word), int32),
    st.builds(VersionCommand, int32),
    st.just(QuitCommand()),
    st.builds(SyncCommand, name, int32, small_body, int32, int64, int32, int32),
    transactions(),
    put_batches(),
    st.builds(GetBatchCommand, name, name, int32, int64, int32, int32),
    st.builds(AdminCommand, st.text(_token_chars, min_size=1, max_size=12), st.lists(token, max_size=4).map(tuple), int32),
    st.builds(ResultReply, int32, small_body, int32),
    st.builds(ValueReply, small_body, int32),
)
replies = st.one_of(
    st.builds(ResultReply, int32, small_body, int32),
    st.builds(ValueReply, small_body, int32),
    values_replies(),
)


def decode_stream(data: bytes, decoder, chunks: list[int] | None = None) -> list:
    out: list = []
    pieces = [data] if chunks is None else split_at(data, chunks)
    for piece in pieces:
        decoder.feed(piece)
        while True:
            got = decoder.read_commands()
            if not got:
                break
            out.extend(got)
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


@given(requests)
@example(PutCommand("", 0, b"", 0, -1, None, 0))
@example(StatsCommand("", -1000))
@example(AdminCommand("v", ("",), 1))
def test_request_round_trip(cmd):
    wire = encode(cmd)
    dec = RequestDecoder(max_body_bytes=limits.MESSAGE_BYTES_MAX_DEFAULT)
    dec.feed(wire)
    assert dec.read_commands() == [cmd]
    assert dec.buffered_bytes == 0
    # And through the general path alone.
    dec = RequestDecoder()
    dec.feed(wire)
    assert dec.next_command() == cmd
    assert dec.next_command() is NEED_DATA


@given(replies)
def test_reply_round_trip(reply):
    wire = encode(reply)
    dec = ResponseDecoder()
    dec.feed(wire)
    assert dec.read_commands() == [reply]
    assert dec.buffered_bytes == 0


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, min_size=1, max_size=12), st.lists(st.integers(0, 10**6), max_size=12), st.integers(0, 64))
def test_any_split_decodes_the_same(cmds, cuts, copy_max):
    wire = b"".join(encode(c) for c in cmds)
    whole = decode_stream(wire, RequestDecoder(copy_body_bytes_max=copy_max))
    assert whole == cmds
    assert decode_stream(wire, RequestDecoder(copy_body_bytes_max=copy_max), cuts) == cmds


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(replies, min_size=1, max_size=12), st.lists(st.integers(0, 10**6), max_size=12))
def test_any_split_of_replies_decodes_the_same(items, cuts):
    wire = b"".join(encode(r) for r in items)
    assert decode_stream(wire, ResponseDecoder(), cuts) == items


# ---- fast path == general path ---------------------------------------------------------------------

number_text = st.one_of(
    st.integers(-(2**33), 2**33).map(str),
    st.sampled_from(["", "-", "+", "+5", "-0", "007", "2147483647", "2147483648", "-2147483648", "-2147483649",
                     "9999999999", "99999999999", "1_0", " 1", "١", "TX:a:1", "null", "x"]),
)


@st.composite
def near_valid_lines(draw) -> bytes:
    """Put/get lines whose tokens are mostly numbers, sometimes wrong; plus a small body."""
    verb = draw(st.sampled_from(["put", "get", "put", "putm", "pu", "getm"]))
    topic = draw(st.one_of(st.just("t"), st.just(""), token))
    count = draw(st.integers(2, 9))
    toks = [verb, topic] + [draw(number_text) for _ in range(count)]
    if verb in ("put", "putm") and draw(st.booleans()):
        toks[3] = str(draw(st.integers(0, 8)))  # a plausible length
    sep = draw(st.sampled_from([" ", " ", " ", "  "]))
    line = sep.join(toks) + draw(st.sampled_from(["", "", " ", "  "]))
    return line.encode() + b"\r\n" + draw(st.binary(max_size=10)) + b"version 7\r\n"


def outcome(data: bytes, *, fast: bool):
    dec = RequestDecoder(max_body_bytes=6, max_batch_bytes=6, frame_bytes_max=100)
    events: list = []
    dec.feed(data)
    while True:
        try:
            if fast:
                got = dec.read_commands()
                if not got:
                    return events
                events.extend(got)
            else:
                cmd = dec.next_command()
                if cmd is NEED_DATA:
                    return events
                events.append(cmd)
        except ProtocolError as exc:
            events.append(("error", exc.fatal, str(exc), exc.opaque))
            if exc.fatal:
                return events


@settings(max_examples=400)
@given(near_valid_lines())
@example(b"put t 1 5 0 2147483648 1\r\nhelloversion 7\r\n")
@example(b"put t 1 5 0 1 2147483648\r\nhelloversion 7\r\n")
@example(b"get t g 1 2 2147483648 3\r\n")
def test_fast_path_agrees_with_general_path(data):
    assert outcome(data, fast=True) == outcome(data, fast=False)


# ---- robustness ------------------------------------------------------------------------------------


@given(st.binary(max_size=4096))
def test_decoder_only_raises_protocol_error(data):
    for dec in (RequestDecoder(max_line_bytes=256), ResponseDecoder(max_line_bytes=256)):
        with contextlib.suppress(ProtocolError):
            dec.feed(data)
            while dec.next_command() is not NEED_DATA:
                pass
        with contextlib.suppress(ProtocolError):
            dec = type(dec)(max_line_bytes=256)
            dec.feed(data)
            while dec.read_commands():
                pass


keywords = st.sampled_from(
    [b"put ", b"get ", b"offset ", b"stats ", b"version ", b"quit", b"sync ", b"transaction ", b"result ",
     b"value ", b"values ", b"putm ", b"getm ", b"admin ", b"\r\n", b" ", b"-1", b"0", b"99", b"TX:a:1", b"null"]
)


@given(st.lists(st.one_of(keywords, st.binary(max_size=6)), max_size=40))
def test_keyword_soup_only_raises_protocol_error(parts):
    data = b"".join(parts)
    for dec in (RequestDecoder(max_line_bytes=128, max_body_bytes=64, max_batch_bytes=64, frame_bytes_max=256),
                ResponseDecoder(max_line_bytes=128, max_body_bytes=256)):
        with contextlib.suppress(ProtocolError):
            dec.feed(data)
            while True:
                try:
                    if not dec.read_commands():
                        break
                except ProtocolError as exc:
                    if exc.fatal:
                        raise


@given(st.lists(requests, min_size=1, max_size=4), st.data())
def test_mutated_frames_only_raise_protocol_error(cmds, data):
    wire = bytearray(b"".join(encode(c) for c in cmds))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            wire[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            wire[i:i] = data.draw(st.binary(min_size=1, max_size=3))
        elif len(wire) > 1:
            del wire[i]
    dec = RequestDecoder(max_body_bytes=4096, max_batch_bytes=4096, frame_bytes_max=8192)
    cuts = data.draw(st.lists(st.integers(0, 10**6), max_size=5))
    with contextlib.suppress(ProtocolError):
        for piece in split_at(bytes(wire), cuts):
            dec.feed(piece)
            while True:
                try:
                    if not dec.read_commands():
                        break
                except ProtocolError as exc:
                    if exc.fatal:
                        raise


# ---- helpers ------------------------------------------------------------------------------------------


def java_pattern_split(text: str) -> list[str]:
    """A port of java.util.regex.Pattern.split(input, 0) for the pattern " "."""
    matches = []
    index = 0
    for m in re.finditer(" ", text):
        matches.append(text[index : m.start()])
        index = m.end()
    if index == 0:
        return [text]
    matches.append(text[index:])
    size = len(matches)
    while size > 0 and matches[size - 1] == "":
        size -= 1
    return matches[:size]


@given(st.text(alphabet="ab ", max_size=12))
def test_java_split_matches_java(text):
    assert java_split(text, " ") == java_pattern_split(text)


@example([])
@example([(1000 + i, 3, 70 * i + 1000, i) for i in range(100)])  # equal widths: fixed template
@example([(-(7 ** (i % 22)), i, 10 ** (i % 19), -i) for i in range(100)])  # widths vary
@given(
    st.lists(st.tuples(int64, int32, int64, int32), min_size=0, max_size=200),
)
def test_put_ok_many_equals_single_replies(rows):
    """Both forms (a partition per reply, one for all) equal the single replies joined, for no
    reply, a few (joined one by one) and 64 or more (one bytes format of the whole batch)."""
    ids = [r[0] for r in rows]
    parts = [r[1] for r in rows]
    offs = [r[2] for r in rows]
    opqs = [r[3] for r in rows]
    expected = b"".join(map(encode_put_ok, ids, parts, offs, opqs))
    assert encode_put_ok_many(np.array(ids, dtype=np.int64), parts, offs, opqs) == expected
    one = parts[0] if rows else 0  # a single partition for all replies (also for none)
    assert encode_put_ok_many(ids, one, offs, opqs) == b"".join(
        encode_put_ok(i, one, o, q) for i, o, q in zip(ids, offs, opqs)
    )
