"""Unit tests of metaq_fast.protocol: the conformance vectors of reference section 16.1, the
request halves of 16.2, MetaQ's decoding rules one by one, limits and errors, and the reply
helpers. Objects are compared; no sockets."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from metaq_fast import limits
from metaq_fast.errors import BAD_REQUEST, InvalidArgumentError, MessageTooLargeError, ProtocolError
from metaq_fast.protocol import (
    NEED_DATA,
    OPAQUE_DEFAULT,
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
    TransactionCommand,
    ValueReply,
    ValuesReply,
    VersionCommand,
    canonical_tx_key,
    encode,
    encode_put_ok,
    encode_put_ok_many,
    encode_putm_ok,
    encode_result,
    encode_stats_body,
    encode_value_header,
    encode_values_header,
    parse_putm_ok,
)
from metaq_fast.protocol.commands import java_split


def decode_all(data: bytes, decoder=None, *, fast: bool = True) -> list:
    """Every command of ``data`` (fed whole); raises what the decoder raises."""
    dec = decoder if decoder is not None else RequestDecoder()
    dec.feed(data)
    if fast:
        out = []
        while True:
            got = dec.read_commands()
            if not got:
                return out
            out.extend(got)
    out = []
    while (cmd := dec.next_command()) is not NEED_DATA:
        out.append(cmd)
    return out


def decode_one(data: bytes, decoder=None):
    """The single command ``data`` holds, checked with both the fast and the general path."""
    fast = decode_all(data, decoder)
    general = decode_all(data, None if decoder is None else type(decoder)(), fast=False)
    assert fast == general
    assert len(fast) == 1, fast
    return fast[0]


def rejects(data: bytes, decoder=None) -> ProtocolError:
    dec = decoder if decoder is not None else RequestDecoder()
    with pytest.raises(ProtocolError) as info:
        decode_all(data, dec)
    return info.value


# ---- 16.1 encoder vectors ----------------------------------------------------------------------

ENCODER_VECTORS = [
    (GetCommand("test", "boyan-group", 1, 1000, 1048576, -3), b"get test boyan-group 1 1000 1048576 -3\r\n"),
    (OffsetCommand("test", "boyan-test", 1, 1000, -1), b"offset test boyan-test 1 1000 -1\r\n"),
    (PutCommand("test", 1, b"hello", 0, -1, None, 0), b"put test 1 5 0 -1 0\r\nhello"),
    (PutCommand("test", 1, b"hello", 0, -1, "TX:test:1", 0), b"put test 1 5 0 -1 TX:test:1 0\r\nhello"),
    (SyncCommand("test", 1, b"hello", 0, 9999, 777, 0), b"sync test 1 5 0 9999 777 0\r\nhello"),
    (StatsCommand("", -1000), b"stats  -1000\r\n"),
    (StatsCommand("topics", -1000), b"stats topics -1000\r\n"),
    (VersionCommand(999), b"version 999\r\n"),
    (QuitCommand(), b"quit\r\n"),
    (
        TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 0, None, 100),
        b"transaction TX:sessionId:99 sessionId COMMIT_ONE_PHASE 100\r\n",
    ),
    (
        TransactionCommand("TX:sessionId:99", "sessionId", "BEGIN", 3, None, 100),
        b"transaction TX:sessionId:99 sessionId BEGIN 3 100\r\n",
    ),
    (
        TransactionCommand("TX:sessionId:99", "sessionId", "BEGIN", 0, "unique-qualifier", 100),
        b"transaction TX:sessionId:99 sessionId BEGIN unique-qualifier 100\r\n",
    ),
    (
        TransactionCommand("TX:sessionId:99", "sessionId", "BEGIN", 3, "unique-qualifier", 100),
        b"transaction TX:sessionId:99 sessionId BEGIN 3 unique-qualifier 100\r\n",
    ),
    (ResultReply(404, b"not found", 99), b"result 404 9 99\r\nnot found"),
    (ResultReply(404, b"", 99), b"result 404 0 99\r\n"),
    (ValueReply(b"hello", 99), b"value 5 99\r\nhello"),
]


@pytest.mark.parametrize(("command", "wire"), ENCODER_VECTORS)
def test_encoder_vectors_exact_bytes(command, wire):
    assert encode(command) == wire


@pytest.mark.parametrize(("command", "wire"), ENCODER_VECTORS)
def test_encoder_vectors_decode_to_the_same_fields(command, wire):
    if isinstance(command, (ResultReply, ValueReply)):
        assert decode_one(wire, ResponseDecoder()) == command
    assert decode_one(wire) == command


def test_stats_blank_item_is_encoded_as_two_spaces():
    assert encode(StatsCommand("")) == b"stats  2147483647\r\n"


# ---- 16.1 decoder vectors ----------------------------------------------------------------------

DECODER_VECTORS = [
    (b"put test 1 5 0 0\r\nhello", PutCommand("test", 1, b"hello", 0, -1, None, 0)),
    (b"put test 1 5 0 100 0\r\nhello", PutCommand("test", 1, b"hello", 0, 100, None, 0)),
    (b"put test 1 5 0 TX:test:100 0\r\nhello", PutCommand("test", 1, b"hello", 0, -1, "TX:test:100", 0)),
    (b"put test 1 5 0 9999 TX:test:100 0\r\nhello", PutCommand("test", 1, b"hello", 0, 9999, "TX:test:100", 0)),
    (b"sync test 1 5 0 9999 0 -1\r\nhello", SyncCommand("test", 1, b"hello", 0, 9999, 0, -1)),
    (b"get test boyan 1 1000 1048576 -3\r\n", GetCommand("test", "boyan", 1, 1000, 1048576, -3)),
    (b"offset test boyan 1 1000 -1\r\n", OffsetCommand("test", "boyan", 1, 1000, -1)),
    (b"value 5 99\r\nhello", ValueReply(b"hello", 99)),
    (b"result 404 9 99\r\nnot found", ResultReply(404, b"not found", 99)),
    (b"version\r\n", VersionCommand(2147483647)),
    (b"version -1\r\n", VersionCommand(-1)),
    (
        b"transaction TX:sessionId:99 sessionId COMMIT_ONE_PHASE 100\r\n",
        TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 0, None, 100),
    ),
    (
        b"transaction TX:sessionId:99 sessionId COMMIT_ONE_PHASE 3 100\r\n",
        TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 3, None, 100),
    ),
    (
        b"transaction TX:sessionId:99 sessionId COMMIT_ONE_PHASE unique-qualifier 100\r\n",
        TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 0, "unique-qualifier", 100),
    ),
    (
        b"transaction TX:sessionId:99 sessionId COMMIT_ONE_PHASE 3 unique-qualifier 100\r\n",
        TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 3, "unique-qualifier", 100),
    ),
]


@pytest.mark.parametrize(("wire", "command"), DECODER_VECTORS)
def test_decoder_vectors(wire, command):
    assert decode_one(wire) == command


def test_incomplete_put_consumes_nothing_then_decodes():
    dec = RequestDecoder()
    dec.feed(b"put test 1 5 0 10\r\nhel")
    assert dec.next_command() is NEED_DATA
    assert dec.read_commands() == []
    assert dec.buffered_bytes == len(b"put test 1 5 0 10\r\nhel")
    dec.feed(b"lo")
    assert dec.next_command() == PutCommand("test", 1, b"hello", 0, -1, None, 10)
    assert dec.buffered_bytes == 0
    assert dec.next_command() is NEED_DATA


def test_sync_vector_consumes_whole_buffer():
    dec = RequestDecoder()
    dec.feed(b"sync test 1 5 0 9999 0 -1\r\nhello")
    assert dec.next_command() == SyncCommand("test", 1, b"hello", 0, 9999, 0, -1)
    assert dec.buffered_bytes == 0


def test_unknown_first_char_is_a_fatal_codec_error():
    err = rejects(b"just for test\r\n")
    assert err.fatal
    assert "just" in str(err)


def test_line_without_crlf_waits():
    dec = RequestDecoder()
    dec.feed(b"just for test")
    assert dec.next_command() is NEED_DATA
    assert dec.read_commands() == []


def test_bare_lf_is_not_a_terminator():
    dec = RequestDecoder()
    dec.feed(b"version 1\nversion 2\r\n")
    with pytest.raises(ProtocolError):  # the line is "version 1\nversion 2": bad opaque
        dec.next_command()
    assert decode_one(b"stats a\nb 5\r\n") == StatsCommand("a\nb", 5)


# ---- 16.2: request halves of the broker vectors ------------------------------------------------

BROKER_REQUESTS = [
    (b"version 1\r\n", VersionCommand(1)),
    (b"version\r\n", VersionCommand(OPAQUE_DEFAULT)),
    (b"offset test g 0 0 2\r\n", OffsetCommand("test", "g", 0, 0, 2)),
    (b"get test g 0 0 1024 3\r\n", GetCommand("test", "g", 0, 0, 1024, 3)),
    (b"stats topics 4\r\n", StatsCommand("topics", 4)),
    (b"put test 0 5 0 907060870 5\r\nhello", PutCommand("test", 0, b"hello", 0, 907060870, None, 5)),
    (b"put test 0 5 0 -1 6\r\nhello", PutCommand("test", 0, b"hello", 0, -1, None, 6)),
    (b"put test 0 5 0 7\r\nhello", PutCommand("test", 0, b"hello", 0, -1, None, 7)),
    (
        b"put test 0 18 1 1880085488 8\r\n" + bytes.fromhex("00000009617474726962757465") + b"hello",
        PutCommand("test", 0, bytes.fromhex("00000009617474726962757465") + b"hello", 1, 1880085488, None, 8),
    ),
    (b"get test g 0 0 1048576 9\r\n", GetCommand("test", "g", 0, 0, 1048576, 9)),
    (b"get test g 0 25 30 10\r\n", GetCommand("test", "g", 0, 25, 30, 10)),
    (b"get test g 0 10 1048576 11\r\n", GetCommand("test", "g", 0, 10, 1048576, 11)),
    (b"get test g 0 113 1024 12\r\n", GetCommand("test", "g", 0, 113, 1024, 12)),
    (
        b"get test g 0 9223372036854775807 1024 13\r\n",
        GetCommand("test", "g", 0, 9223372036854775807, 1024, 13),
    ),
    (b"get test g 0 500 1024 14\r\n", GetCommand("test", "g", 0, 500, 1024, 14)),
    (b"get test g 0 0 0 15\r\n", GetCommand("test", "g", 0, 0, 0, 15)),
    (b"offset test g 0 60 16\r\n", OffsetCommand("test", "g", 0, 60, 16)),
    (b"offset test g 0 5000 17\r\n", OffsetCommand("test", "g", 0, 5000, 17)),
    (b"offset test g 0 -5 18\r\n", OffsetCommand("test", "g", 0, -5, 18)),
    (b"stats offsets 19\r\n", StatsCommand("offsets", 19)),
    (b"put test 2 5 0 -1 20\r\nhello", PutCommand("test", 2, b"hello", 0, -1, None, 20)),
    (b"put other 0 5 0 -1 21\r\nhello", PutCommand("other", 0, b"hello", 0, -1, None, 21)),
    (b"put test 0 5 0 12345 22\r\nhello", PutCommand("test", 0, b"hello", 0, 12345, None, 22)),
    (b"put test -1 5 0 -1 23\r\nhello", PutCommand("test", -1, b"hello", 0, -1, None, 23)),
    (b"put test 1 5 0 -1 24\r\nhello", PutCommand("test", 1, b"hello", 0, -1, None, 24)),
    (b"sync test 0 5 0 9999 907060870 25\r\nhello", SyncCommand("test", 0, b"hello", 0, 9999, 907060870, 25)),
    (b"stats  26\r\n", StatsCommand("", 26)),
    (b"stats reset 27\r\n", StatsCommand("reset", 27)),
    (b"stats help 28\r\n", StatsCommand("help", 28)),
    (b"stats config 29\r\n", StatsCommand("config", 29)),
    (b"transaction TX:s1:1 s1 BEGIN 30\r\n", TransactionCommand("TX:s1:1", "s1", "BEGIN", 0, None, 30)),
    (b"put test 0 5 0 907060870 TX:s1:1 31\r\nhello", PutCommand("test", 0, b"hello", 0, 907060870, "TX:s1:1", 31)),
    (
        b"transaction TX:s1:1 s1 COMMIT_ONE_PHASE 32\r\n",
        TransactionCommand("TX:s1:1", "s1", "COMMIT_ONE_PHASE", 0, None, 32),
    ),
    (b"put test 0 5 0 -1 TX:s1:2 33\r\nhello", PutCommand("test", 0, b"hello", 0, -1, "TX:s1:2", 33)),
    (b"transaction TX:s1:3 s1 BEGIN 34\r\n", TransactionCommand("TX:s1:3", "s1", "BEGIN", 0, None, 34)),
    (b"put test -1 5 0 -1 TX:s1:3 35\r\nhello", PutCommand("test", -1, b"hello", 0, -1, "TX:s1:3", 35)),
    (b"transaction TX:s1:3 s1 END 36\r\n", TransactionCommand("TX:s1:3", "s1", "END", 0, None, 36)),
    (b"transaction TX:s1:3 s1 ROLLBACK 37\r\n", TransactionCommand("TX:s1:3", "s1", "ROLLBACK", 0, None, 37)),
    (b"transaction null s1 RECOVER 38\r\n", TransactionCommand("null", "s1", "RECOVER", 0, None, 38)),
    (b"stats\r\n", StatsCommand("", OPAQUE_DEFAULT)),
    (b"quit\r\n", QuitCommand()),
    (b"get test g 0 0 1024 50\r\n", GetCommand("test", "g", 0, 0, 1024, 50)),
    (b"put test 0 5 0 -1 51\r\nhello", PutCommand("test", 0, b"hello", 0, -1, None, 51)),
]


@pytest.mark.parametrize(("wire", "command"), BROKER_REQUESTS)
def test_broker_vector_requests(wire, command):
    assert decode_one(wire) == command


def test_broker_vector_requests_on_one_connection():
    stream = b"".join(wire for wire, _ in BROKER_REQUESTS)
    expected = [command for _, command in BROKER_REQUESTS]
    assert decode_all(stream) == expected
    assert decode_all(stream, fast=False) == expected


def test_step_25_put_split_before_its_body_end():
    dec = RequestDecoder()
    dec.feed(b"put test 1 5 0 -1 24\r\nhel")
    assert dec.read_commands() == []
    dec.feed(b"lo")
    assert dec.read_commands() == [PutCommand("test", 1, b"hello", 0, -1, None, 24)]


@pytest.mark.parametrize("wire", [b"hello\r\n", b"put test 0 5 0 1 2 3 4\r\nhello"])
def test_steps_41_42_close_the_connection(wire):
    assert rejects(wire).fatal


# ---- MetaQ decoding rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b", ["a", "b"]),
        ("a  b", ["a", "", "b"]),
        (" a", ["", "a"]),
        ("a ", ["a"]),
        ("a   ", ["a"]),
        ("   ", []),
        ("", [""]),
        ("abc", ["abc"]),
        ("stats  -1000", ["stats", "", "-1000"]),
    ],
)
def test_java_split_semantics(text, expected):
    assert java_split(text, " ") == expected


def test_stats_with_two_spaces_has_a_blank_item():
    assert decode_one(b"stats  -1000\r\n") == StatsCommand("", -1000)


def test_trailing_spaces_are_dropped_like_java():
    assert decode_one(b"put test 1 5 0 -1 7   \r\nhello") == PutCommand("test", 1, b"hello", 0, -1, None, 7)
    assert decode_one(b"version 5 \r\n") == VersionCommand(5)
    assert decode_one(b"stats \r\n") == StatsCommand("", OPAQUE_DEFAULT)


def test_interior_empty_tokens_are_kept():
    # The empty token is the topic.
    assert decode_one(b"put  1 5 0 -1 7\r\nhello") == PutCommand("", 1, b"hello", 0, -1, None, 7)
    err = rejects(b"get t g  1 2 3\r\n")  # empty partition token
    assert "partition" in str(err)


@pytest.mark.parametrize(
    ("wire", "command"),
    [
        (b"v 5\r\n", VersionCommand(5)),
        (b"vxyz\r\n", VersionCommand(OPAQUE_DEFAULT)),
        (b"version 1 2 3\r\n", VersionCommand(1)),
        (b"values 10 2 5\r\n", VersionCommand(10)),  # MetaQ: 'v' and not "value" -> version
        (b"q\r\n", QuitCommand()),
        (b"quitting now 5\r\n", QuitCommand()),
        (b"stats topics 4 extra tokens\r\n", StatsCommand("topics", 4)),
        (b"get t g 1 2 3 4 extra\r\n", GetCommand("t", "g", 1, 2, 3, 4)),
        (b"offset t g 1 2 3 extra\r\n", OffsetCommand("t", "g", 1, 2, 3)),
        (b"result 200 0 5 extra\r\n", ResultReply(200, b"", 5)),
        (b"value 0 5 extra\r\n", ValueReply(b"", 5)),
        ("\u0171 anything\r\n".encode(), QuitCommand()),  # (byte) 'ű' == 'q'
        ("\u0176 12\r\n".encode(), VersionCommand(12)),  # (byte) 'Ŷ' == 'v'
        (b"put t +1 5 +0 -3 +9\r\nhello", PutCommand("t", 1, b"hello", 0, -3, None, 9)),
        (b"put t +1 5 +0 +9\r\nhello", PutCommand("t", 1, b"hello", 0, -1, None, 9)),
        (b"put t 001 5 0 -0 0009\r\nhello", PutCommand("t", 1, b"hello", 0, 0, None, 9)),
    ],
)
def test_metaq_dispatch_and_token_rules(wire, command):
    assert decode_one(wire) == command


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"pu test 1 5 0 0\r\nhello", "Expect put,but was 'pu'"),
        (b"gett t g 1 2 3 4\r\n", "Expect get,but was 'gett'"),
        (b"tx TX:a:1 s BEGIN 1\r\n", "Expect transaction,but was 'tx'"),
        (b"results 200 0 1\r\n", "Expect result,but was 'results'"),
        (b"offsets t g 1 2 3\r\n", "Expect offset,but was 'offsets'"),
        (b"status 1\r\n", "Expect sync,but was 'status'"),
        (b"adm x 1\r\n", "Expect admin,but was 'adm'"),
    ],
)
def test_expect_name_errors(wire, message):
    err = rejects(wire)
    assert err.fatal
    assert message in str(err)


def test_int32_and_int64_ranges():
    assert decode_one(b"get t g 2147483647 9223372036854775807 -2147483648 2147483647\r\n") == GetCommand(
        "t", "g", 2147483647, 9223372036854775807, -2147483648, 2147483647
    )
    assert decode_one(b"get t g -2147483648 -9223372036854775808 1 -2147483648\r\n") == GetCommand(
        "t", "g", -2147483648, -9223372036854775808, 1, -2147483648
    )
    assert "partition" in str(rejects(b"get t g 2147483648 0 1 1\r\n"))
    assert "offset" in str(rejects(b"get t g 1 9223372036854775808 1 1\r\n"))
    assert "opaque" in str(rejects(b"get t g 1 1 1 2147483648\r\n"))
    assert "msgId" in str(rejects(b"sync t 1 0 0 9223372036854775808 1 1\r\n"))
    assert decode_one(b"sync t 1 0 0 -9223372036854775808 1 1\r\n").msg_id == -(2**63)


@pytest.mark.parametrize(
    "token", [b"1_0", b" 1", b"0x1", b"1.0", b"\xd9\xa3", b"+", b"-", b"--1", b"+-1", b"1e3", b"\t1", b""]
)
def test_numbers_are_java_parseint_not_python_int(token):
    err = rejects(b"get t g " + token + b" 1 1 1\r\n")
    assert err.fatal


def test_put_seventh_token_checksum_or_tx_key():
    # Starts with a digit or '-': checksum; anything else: a transaction key.
    assert decode_one(b"put t 1 0 0 -5 3\r\n").checksum == -5
    assert decode_one(b"put t 1 0 0 null 3\r\n").tx_key == "null"
    assert "transaction key" in str(rejects(b"put t 1 0 0 +5 3\r\n"))
    assert "checksum" in str(rejects(b"put t 1 0 0 5x 3\r\n"))
    assert rejects(b"put t 1 0 0  3\r\n").fatal  # empty slot: charAt(0) fails in MetaQ


@pytest.mark.parametrize("ntok", [1, 2, 3, 4, 5, 9, 10])
def test_put_token_counts(ntok):
    tokens = [b"put", b"t", b"1", b"0", b"0", b"1", b"2", b"3", b"4", b"5"][:ntok]
    assert rejects(b" ".join(tokens) + b"\r\n").fatal


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        ("null", "null"),
        ("TX:s:1", "TX:s:1"),
        ("TX:s:007", "TX:s:7"),
        ("TX::5", "TX::5"),
        ("TX:s:5:", "TX:s:5"),  # trailing empty parts dropped (Pattern.split)
        ("TX:s:-2147483648", "TX:s:-2147483648"),
        ("XID:1:0aFF:00:q", "XID:1:0aff:00:q"),
        ("XID:-1:::", "XID:-1:::"),
        ("XID:1:abc:1:q", "XID:1:ab::q"),  # odd hex length: last char ignored
        ("XID:1:-1:+f:q", "XID:1:ff:0f:q"),  # Integer.parseInt(pair, 16) takes a sign
    ],
)
def test_canonical_tx_keys(key, canonical):
    assert canonical_tx_key(key) == canonical


@pytest.mark.parametrize(
    "key",
    ["", "NULL", "tx:s:1", "TX:s", "TX:s:1:2", "TX:s:x", "TX:s:2147483648", "XID:1:00:00", "XID:1:00:00:q:r", "XID:x:00:00:q", "XID:1:zz:00:q", "XID:1:0 :00:q"],
)
def test_bad_tx_keys(key):
    with pytest.raises(ValueError):
        canonical_tx_key(key)


def test_tx_keys_on_the_wire_are_canonical():
    assert decode_one(b"put t 1 0 0 -1 TX:a:05 3\r\n").tx_key == "TX:a:5"
    assert decode_one(b"transaction XID:7:AB:CD:q a PREPARE 1\r\n").tx_key == "XID:7:ab:cd:q"
    err = rejects(b"transaction TX:a s BEGIN 1\r\n")
    assert "transaction key" in str(err) and err.fatal


def test_transaction_token_rules():
    tx = b"transaction TX:a:1 s BEGIN "
    assert decode_one(tx + b"-5 1\r\n") == TransactionCommand("TX:a:1", "s", "BEGIN", 0, "-5", 1)
    assert decode_one(tx + b"-5 q 1\r\n") == TransactionCommand("TX:a:1", "s", "BEGIN", -5, "q", 1)
    assert decode_one(tx + b"007 1\r\n") == TransactionCommand("TX:a:1", "s", "BEGIN", 7, None, 1)
    assert decode_one(tx + b"3  1\r\n") == TransactionCommand("TX:a:1", "s", "BEGIN", 3, "", 1)
    assert "timeout" in str(rejects(tx + b"99999999999 1\r\n"))  # numeric: a timeout, too big
    assert "timeout" in str(rejects(tx + b" 1\r\n"))  # isNumeric("") is true, then parse fails
    assert "type" in str(rejects(b"transaction TX:a:1 s begin 1\r\n"))
    assert rejects(b"transaction TX:a:1 s BEGIN 1 2 3 4\r\n").fatal
    assert rejects(b"transaction TX:a:1 s BEGIN\r\n").fatal
    assert rejects(b"transaction TX:a:1 s\r\n").fatal


def test_result_and_value_from_a_client_are_decoded_as_replies():
    assert decode_one(b"result 200 2 7\r\nok") == ResultReply(200, b"ok", 7)
    assert decode_one(b"value 2 7\r\nok") == ValueReply(b"ok", 7)


@pytest.mark.parametrize(
    "wire",
    [
        b"\r\n",
        b"   \r\n",
        b" version 1\r\n",
        b"get t g 1 2 3\r\n",
        b"offset t g 1 2\r\n",
        b"result 200 0\r\n",
        b"value 0\r\n",
        b"sync t 1 0 0 5\r\n",
        b"sync t 1 0 0 5 6 7 8\r\n",
        b"stats item notanumber\r\n",
        b"version x\r\n",
        b"admin v\r\n",
        b"admin  a 5\r\n",
        b"put t 1 -1 0 0\r\n",
        b"put t 1 2147483648 0 0\r\n",
        b"\x00\r\n",
        b"\xff\xfe\r\n",
    ],
)
def test_fatal_decode_errors(wire):
    err = rejects(wire)
    assert err.fatal
    assert err.code == BAD_REQUEST
    assert err.position == 0


def test_error_message_says_what_was_expected_and_quotes_input():
    err = rejects(b"put test 1 abc 0 0\r\n")
    assert str(err) == f"bad length 'abc' in put, expected 0..{limits.MESSAGE_BYTES_MAX_DEFAULT}"
    long_token = b"x" * 200
    err = rejects(b"get t g " + long_token + b" 1 1 1\r\n")
    assert "'" + "x" * 64 + "'..." in str(err)
    assert "x" * 65 not in str(err)


def test_error_position_is_the_stream_offset_of_the_bad_command():
    dec = RequestDecoder()
    dec.feed(b"version 1\r\nversion 2\r\n")
    dec.feed(b"bogus\r\n")
    assert dec.read_commands() == [VersionCommand(1), VersionCommand(2)]
    with pytest.raises(ProtocolError) as info:
        dec.read_commands()
    assert info.value.position == 22


# ---- limits and error handling --------------------------------------------------------------------


def test_line_too_long_is_fatal_before_buffering_more():
    dec = RequestDecoder(max_line_bytes=100)
    dec.feed(b"x" * 100)
    assert dec.next_command() is NEED_DATA
    dec.feed(b"\r")  # could still be a 100-byte line
    assert dec.next_command() is NEED_DATA
    dec.feed(b"y")
    with pytest.raises(ProtocolError) as info:
        dec.next_command()
    assert info.value.fatal
    assert "longer than 100 bytes" in str(info.value)


def test_line_of_exactly_max_bytes_is_accepted():
    line = b"stats " + b"i" * 88 + b" 12345"
    assert len(line) == 100
    assert decode_one(line + b"\r\n", RequestDecoder(max_line_bytes=100)) == StatsCommand("i" * 88, 12345)
    with pytest.raises(ProtocolError):
        decode_all(b"stats " + b"i" * 89 + b" 12345\r\n", RequestDecoder(max_line_bytes=100))


def test_fast_path_respects_the_line_limit():
    topic = b"t" * 120
    with pytest.raises(ProtocolError):
        decode_all(b"get " + topic + b" g 1 1 1 1\r\n", RequestDecoder(max_line_bytes=100))
    with pytest.raises(ProtocolError):
        decode_all(b"put " + topic + b" 1 0 0 -1 1\r\n", RequestDecoder(max_line_bytes=100))


def test_too_large_put_is_skipped_and_not_fatal():
    dec = RequestDecoder(max_body_bytes=10)
    dec.feed(b"version 1\r\nput t 0 20 0 -1 77\r\n01234")
    assert dec.read_commands() == [VersionCommand(1)]
    with pytest.raises(MessageTooLargeError) as info:
        dec.read_commands()
    err = info.value
    assert not err.fatal
    assert err.opaque == 77
    assert err.position == 11
    assert dec.skipping_bytes == 15
    assert dec.buffered_bytes == 0
    dec.feed(b"56789")  # discarded, never buffered
    assert dec.buffered_bytes == 0
    dec.feed(b"0123456789version 2\r\n")
    assert dec.read_commands() == [VersionCommand(2)]
    assert dec.skipping_bytes == 0


def test_too_large_put_whole_in_buffer_is_consumed():
    dec = RequestDecoder(max_body_bytes=3)
    dec.feed(b"put t 0 5 0 9\r\nhelloversion 2\r\n")
    with pytest.raises(MessageTooLargeError) as info:
        dec.next_command()
    assert info.value.opaque == 9
    assert dec.next_command() == VersionCommand(2)


def test_too_large_sync_is_skipped():
    dec = RequestDecoder(max_body_bytes=3)
    dec.feed(b"sync t 0 5 0 1 2 3\r\nhelloquit\r\n")
    with pytest.raises(MessageTooLargeError) as info:
        dec.next_command()
    assert info.value.opaque == 3 and not info.value.fatal
    assert dec.next_command() == QuitCommand()


def test_body_beyond_the_framing_limit_is_fatal():
    dec = RequestDecoder(max_body_bytes=10, max_batch_bytes=10, frame_bytes_max=100)
    with pytest.raises(ProtocolError) as info:
        decode_all(b"put t 0 101 0 -1 5\r\n", dec)
    assert info.value.fatal
    assert not isinstance(info.value, MessageTooLargeError)


def test_bad_token_beats_too_large():
    dec = RequestDecoder(max_body_bytes=3)
    with pytest.raises(ProtocolError) as info:
        decode_all(b"put t x 5 0 9\r\nhello", dec)
    assert info.value.fatal


def test_decoder_refuses_use_after_a_fatal_error():
    dec = RequestDecoder()
    dec.feed(b"bogus\r\nversion 1\r\n")
    with pytest.raises(ProtocolError) as first:
        dec.next_command()
    assert first.value.fatal
    for call in (dec.next_command, dec.read_commands, lambda: dec.feed(b"version 2\r\n")):
        with pytest.raises(ProtocolError) as again:
            call()
        assert again.value.fatal
        assert "unusable" in str(again.value)


def test_read_commands_returns_good_commands_before_an_error():
    dec = RequestDecoder()
    dec.feed(b"version 1\r\nversion 2\r\nbogus\r\n")
    assert dec.read_commands() == [VersionCommand(1), VersionCommand(2)]
    with pytest.raises(ProtocolError):
        dec.read_commands()


def test_read_commands_limit():
    dec = RequestDecoder()
    dec.feed(b"version 1\r\n" * 5 + b"put t 0 1 0 -1 3\r\nx" * 5)
    assert len(dec.read_commands(limit=3)) == 3
    assert len(dec.read_commands(limit=4)) == 4
    assert len(dec.read_commands()) == 3
    assert dec.read_commands() == []


def test_non_fatal_error_after_commands_is_deferred_then_decoding_goes_on():
    dec = RequestDecoder(max_body_bytes=2)
    dec.feed(b"version 1\r\nput t 0 3 0 -1 5\r\nabcversion 2\r\n")
    assert dec.read_commands() == [VersionCommand(1)]
    with pytest.raises(MessageTooLargeError):
        dec.read_commands()
    assert dec.read_commands() == [VersionCommand(2)]


def test_large_bodies_are_zero_copy_views_that_stay_valid():
    dec = RequestDecoder(copy_body_bytes_max=4)
    chunk = b"put t 0 8 0 -1 1\r\n01234567put t 0 3 0 -1 2\r\nabc"
    dec.feed(chunk)
    big, small = dec.read_commands()
    assert isinstance(big.data, memoryview) and big.data.readonly
    assert big.data.obj is chunk  # a view of the fed chunk itself: no copy
    assert isinstance(small.data, bytes)
    dec.feed(b"version 1\r\n" * 100)  # later feeds never touch the viewed bytes
    dec.read_commands()
    assert big.data == b"01234567"
    assert big == PutCommand("t", 0, b"01234567", 0, -1, None, 1)
    assert hash(big) == hash(PutCommand("t", 0, b"01234567", 0, -1, None, 1))


def test_feed_copies_mutable_buffers():
    dec = RequestDecoder(copy_body_bytes_max=0)
    data = bytearray(b"put t 0 3 0 -1 1\r\nabc")
    dec.feed(data)
    data[:] = b"x" * len(data)
    assert dec.next_command().data == b"abc"


def test_large_body_in_small_chunks_is_joined_once():
    body = bytes(range(256)) * 400
    wire = b"put t 0 %d 0 -1 1\r\n" % len(body) + body
    dec = RequestDecoder()
    for i in range(0, len(wire), 1000):
        dec.feed(wire[i : i + 1000])
        if i + 1000 < len(wire):
            assert dec.read_commands() == []
            # While the body is incomplete the chunks wait in the tail, unjoined.
            assert len(dec._tail) <= (i // 1000) + 1
    assert dec.read_commands() == [PutCommand("t", 0, body, 0, -1, None, 1)]


def test_decoded_commands_are_frozen_instances_of_their_class():
    cmd = decode_one(b"put t 0 1 0 -1 1\r\nx")
    assert type(cmd) is PutCommand
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.topic = "u"  # type: ignore[misc]
    get = decode_one(b"get t g 1 2 3 4\r\n")
    assert type(get) is GetCommand
    with pytest.raises(dataclasses.FrozenInstanceError):
        get.offset = 5  # type: ignore[misc]


# ---- extensions ------------------------------------------------------------------------------------


def batch_body(records: list[bytes]) -> bytes:
    index = b"".join(struct.pack(">I", len(r)) for r in records)
    sets = b"".join(struct.pack(">iiqi", len(r), 0, 0, 0) + r for r in records)
    return index + sets


def test_putm_frames_a_batch():
    body = batch_body([b"a", b"bc"])
    wire = b"putm t 3 2 %d -1 9\r\n" % len(body) + body
    cmd = decode_one(wire)
    assert cmd == PutBatchCommand("t", 3, 2, body, -1, 9)
    assert encode(cmd) == wire
    assert cmd.record_lengths().tolist() == [1, 2]
    assert bytes(cmd.message_set()) == body[8:]
    big = decode_one(b"putm t 3 1 24 18446744073709551615 9\r\n" + bytes(24))
    assert big.checksum == 2**64 - 1


@pytest.mark.parametrize(
    ("line", "fatal", "too_large"),
    [
        (b"putm t 0 0 24 -1 5", False, False),  # count < 1
        (b"putm t 0 2 24 -1 5", False, False),  # 24 bytes cannot hold 2 records
        (b"putm t 0 1000001 24 -1 5", False, False),
        (b"putm t 0 1 101 -1 5", False, True),  # above max_batch_bytes
        (b"putm t 0 1 24 -2 5", True, False),
        (b"putm t 0 1 24 18446744073709551616 5", True, False),
        (b"putm t 0 1 24 -1", True, False),
        (b"putm t 0 1 24 -1 5 6", True, False),
        (b"putm t 0 1 x -1 5", True, False),
        (b"putm t 0 1 -24 -1 5", True, False),
        (b"putm t 0 1 1001 -1 5", True, False),  # above the framing limit
    ],
)
def test_putm_checks(line, fatal, too_large):
    dec = RequestDecoder(max_body_bytes=100, max_batch_bytes=100, frame_bytes_max=1000)
    declared = line.split(b" ")[4]
    body = bytes(int(declared)) if declared.isdigit() else b""
    dec.feed(line + b"\r\n" + body + b"version 3\r\n")
    with pytest.raises(ProtocolError) as info:
        dec.read_commands()
    assert info.value.fatal is fatal
    assert isinstance(info.value, MessageTooLargeError) is too_large
    if not fatal:
        assert info.value.opaque == 5
        # The declared body is skipped, the stream goes on after it.
        assert dec.read_commands() == [VersionCommand(3)]


def test_getm_and_admin():
    assert decode_one(b"getm t g 1 2 3 4\r\n") == GetBatchCommand("t", "g", 1, 2, 3, 4)
    assert rejects(b"getm t g 1 2 3 4 5\r\n").fatal
    assert rejects(b"getm t g 1 2 3\r\n").fatal
    admin = AdminCommand("close-partitions", ("test", "0", "3"), 42)
    assert encode(admin) == b"admin close-partitions test 0 3 42\r\n"
    assert decode_one(encode(admin)) == admin
    assert decode_one(b"admin stop 1\r\n") == AdminCommand("stop", (), 1)
    assert decode_one(b"admin x  y 1\r\n") == AdminCommand("x", ("", "y"), 1)


def values_wire(records: list[bytes], opaque: int = 5) -> tuple[bytes, ValuesReply]:
    index = b"".join(struct.pack(">I", len(r)) for r in records)
    data = b"".join(struct.pack(">iiqi", len(r), 1, 2, 0) + r for r in records)
    reply = ValuesReply(len(data), len(records), 77, index, data, opaque)
    return encode_values_header(len(data), len(records), opaque, index, 77) + data, reply


def test_values_reply():
    wire, reply = values_wire([b"hello", b"", b"x" * 300])
    assert encode(reply) == wire
    got = decode_one(wire, ResponseDecoder())
    assert got == reply
    assert got.record_lengths().tolist() == [5, 0, 300]
    empty_wire, empty = values_wire([])
    assert decode_one(empty_wire, ResponseDecoder()) == empty


def test_values_reply_with_inconsistent_index_is_fatal():
    wire, _ = values_wire([b"hello"])
    bad = wire.replace(b"\x00\x00\x00\x05", b"\x00\x00\x00\x06", 1)
    err = rejects(bad, ResponseDecoder())
    assert err.fatal


def test_response_decoder_rejects_requests():
    for wire in (b"put t 0 0 0 -1 1\r\n", b"version 1\r\n", b"get t g 1 1 1 1\r\n", b"valuez 1 1\r\n"):
        assert rejects(wire, ResponseDecoder()).fatal
    assert rejects(b"value 11 1\r\n", ResponseDecoder(max_body_bytes=10)).fatal


def test_response_decoder_replies_in_chunks():
    stream = encode_put_ok(1, 2, 3, 4) + b"value 3 9\r\nabc" + encode_result(404, "not here", 5)
    expected = [ResultReply(200, b"1 2 3", 4), ValueReply(b"abc", 9), ResultReply(404, b"not here", 5)]
    assert decode_all(stream, ResponseDecoder()) == expected
    dec = ResponseDecoder()
    got = []
    for i in range(len(stream)):
        dec.feed(stream[i : i + 1])
        got.extend(dec.read_commands())
    assert got == expected


# ---- reply helpers -----------------------------------------------------------------------------------


def test_encode_result_and_value_header():
    assert encode_result(404, b"not found", 99) == b"result 404 9 99\r\nnot found"
    assert encode_result(500, "中", 1) == "result 500 3 1\r\n中".encode()
    assert encode_value_header(5, 99) + b"hello" == b"value 5 99\r\nhello"


def test_encode_put_ok():
    assert encode_put_ok(123, 0, 25, 6) == b"result 200 8 6\r\n123 0 25"


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000, 8191, 8192, 9000])
def test_encode_put_ok_many_equals_single_replies(n):
    rng = np.random.default_rng(n)
    ids = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
    ids[: n // 3] = rng.integers(0, 10, n // 3)
    offsets = rng.integers(0, 2**40, n, dtype=np.int64)
    opaques = rng.integers(-(2**31), 2**31 - 1, n, dtype=np.int64, endpoint=True)
    expected = b"".join(encode_put_ok(i, 7, o, q) for i, o, q in zip(ids.tolist(), offsets.tolist(), opaques.tolist()))
    assert encode_put_ok_many(ids, 7, offsets, opaques) == expected
    assert encode_put_ok_many(ids.tolist(), 7, offsets.tolist(), opaques.tolist()) == expected


@pytest.mark.parametrize("id_base, off_base", [
    (2062476692353449984, 10**9),  # one shared head each: the usual batch
    (2062476692352999000, 999_000),  # ids and offsets cross a 10**6 boundary: no shared head
    (10**6, 0),  # smallest value with a head; offsets from 0
    (0, 0),
])
def test_encode_put_ok_many_of_a_realistic_batch(id_base, off_base):
    n = 2000
    ids = np.arange(id_base, id_base + 2 * n, 2, dtype=np.int64)
    offsets = np.arange(off_base, off_base + 120 * n, 120, dtype=np.int64)
    opaques = np.arange(990, 990 + n, dtype=np.int64)  # widths 3 and 4
    expected = b"".join(encode_put_ok(i, 3, o, q) for i, o, q in zip(ids.tolist(), offsets.tolist(), opaques.tolist()))
    assert encode_put_ok_many(ids, 3, offsets, opaques) == expected


@pytest.mark.parametrize("repeat", [20, 2100])
def test_encode_put_ok_many_extremes_and_partition_arrays(repeat):
    ids = [-(2**63), 2**63 - 1, 0, -1] * repeat
    parts = [-1, 0, 2**31 - 1, -(2**31)] * repeat
    offs = [0, 9, 10, 2**63 - 1] * repeat
    opqs = [2**31 - 1, -(2**31), 0, -10] * repeat
    expected = b"".join(map(encode_put_ok, ids, parts, offs, opqs))
    assert encode_put_ok_many(ids, parts, offs, opqs) == expected
    assert encode_put_ok_many(ids, 5, offs, opqs) == b"".join(encode_put_ok(i, 5, o, q) for i, o, q in zip(ids, offs, opqs))
    assert encode_put_ok_many(ids[:3], parts[:3], offs[:3], opqs[:3]) == b"".join(
        map(encode_put_ok, ids[:3], parts[:3], offs[:3], opqs[:3])
    )
    with pytest.raises(ValueError):
        encode_put_ok_many([1, 2], 0, [1], [1, 2])


def test_putm_ok_round_trip():
    ids = np.array([5, -1, 2**62], dtype=np.int64)
    wire = encode_putm_ok(3, 1000, ids.astype(">i8").tobytes(), 8)
    reply = decode_one(wire, ResponseDecoder())
    assert reply.code == 200 and reply.opaque == 8
    assert bytes(reply.body[:11]) == b"3 1000 3\n" + bytes(reply.body[9:11])
    partition, first_offset, got = parse_putm_ok(reply.body)
    assert (partition, first_offset) == (3, 1000)
    assert got.dtype == np.int64 and got.tolist() == ids.tolist()
    assert encode_putm_ok(3, 1000, ids, 8) == wire
    with pytest.raises(ProtocolError):
        parse_putm_ok(b"3 1000 2\n" + bytes(8))
    with pytest.raises(ProtocolError):
        parse_putm_ok(b"3 1000\n")


def test_stats_body_matches_the_broker_vectors():
    body = encode_stats_body(["test *Empty*"])
    assert encode_result(200, body, 4) == b"result 200 26 4\r\nSTATS\r\ntest *Empty*\r\nEND\r\n"
    body = encode_stats_body(["reset ok"])
    assert encode_result(200, body, 27) == b"result 200 22 27\r\nSTATS\r\nreset ok\r\nEND\r\n"
    help_lines = [
        "*EMPTY* Returns broker info.",
        "help Returns help menu.",
        "topics Returns topics statistics detail info.",
        "offsets Returns partitions detail info.",
        "realtime Returns realtime statistics detail info.",
        "config Returns broker's config file content.",
    ]
    assert encode_result(200, encode_stats_body(help_lines), 28).startswith(b"result 200 252 28\r\nSTATS\r\n")
    offsets = encode_stats_body(["test part 0 min_offset 0 max_offset 113"])
    assert encode_result(200, offsets, 19).startswith(b"result 200 53 19\r\n")


# ---- construction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: PutCommand("a b", 0, b"", 0, -1, None, 0),
        lambda: PutCommand("a\r\nb", 0, b"", 0, -1, None, 0),
        lambda: PutCommand("t", 2**31, b"", 0, -1, None, 0),
        lambda: PutCommand("t", 0, "text", 0, -1, None, 0),
        lambda: PutCommand("t", 0, b"", 0, -1, "TX:bad", 0),
        lambda: PutCommand("t", 0, b"", 0, -1, None, True),
        lambda: GetCommand("t", "g", 0, 2**63, 1, 1),
        lambda: TransactionCommand("TX:a:1", "s", "begin", 0, None, 1),
        lambda: TransactionCommand("TX:a:1", "s", "BEGIN", 0, "a b", 1),
        lambda: StatsCommand("a b", 1),
        lambda: PutBatchCommand("t", 0, 2, bytes(24), -1, 1),
        lambda: PutBatchCommand("t", 0, 1, bytes(24), -2, 1),
        lambda: ValuesReply(1, 1, 0, b"\0\0\0\0", b"", 1),
        lambda: AdminCommand("", (), 1),
        lambda: AdminCommand("v", ("a b",), 1),
    ],
)
def test_constructors_validate(make):
    with pytest.raises(InvalidArgumentError):
        make()


def test_constructors_normalise():
    cmd = PutCommand("t", np.int32(3), bytearray(b"ab"), 0, -1, "TX:s:01", 1)
    assert cmd.partition == 3 and type(cmd.partition) is int
    assert cmd.data == b"ab" and type(cmd.data) is bytes
    assert cmd.tx_key == "TX:s:1"
    assert AdminCommand("v", ["a"], 1).args == ("a",)


def test_encode_rejects_unknown_objects():
    with pytest.raises(TypeError):
        encode(object())


def test_long_number_tokens_never_escape_as_value_errors():
    dec = RequestDecoder(max_line_bytes=20_000)
    zeros = b"0" * 9000
    # Java's parseInt takes any number of leading zeros.
    assert decode_all(b"get t g " + zeros + b"7 -" + zeros + b"1 1 1\r\n", dec) == [GetCommand("t", "g", 7, -1, 1, 1)]
    err = rejects(b"get t g " + b"9" * 9000 + b" 1 1 1\r\n", RequestDecoder(max_line_bytes=20_000))
    assert err.fatal and "partition" in str(err)
    err = rejects(b"put t 0 " + b"9" * 9000 + b" 0 -1 1\r\n", RequestDecoder(max_line_bytes=20_000))
    assert err.fatal and "length" in str(err)


# ---- PutRun fast path (the broker's decoder) ---------------------------------------------------


def test_put_runs_decode_the_same_puts_as_one_by_one():
    stream = (b"put t 0 1 0 -1 1\r\na" + b"put t 0 1 0 2\r\nb" + b"put t 0 1 0 907060870 3\r\nc"
              + b"put t 0 1 0 -1 1_0\r\nd" + b"put t 0 1 0 -1 5\r\ne" + b"put t 1 1 0 -1 6\r\nf"
              + b"put t 0 1 0 -1 99999999999\r\ng")
    plain = RequestDecoder()
    plain.feed(stream)
    expected = []
    with pytest.raises(ProtocolError):
        while (cmd := plain.next_command()) is not NEED_DATA:
            expected.append(cmd)
    dec = RequestDecoder(put_runs=True)
    dec.feed(stream)
    got = []
    from metaq_fast.protocol import PutRun
    with pytest.raises(ProtocolError):
        while True:
            cmds = dec.read_commands()
            if not cmds:
                break
            for cmd in cmds:
                got.extend(cmd.commands() if isinstance(cmd, PutRun) else [cmd])
    assert got == expected and [c.opaque for c in got] == [1, 2, 3]
