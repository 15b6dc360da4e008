"""Record layout, checksums and batch encode/decode against MetaQ's vectors (reference §4)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from metaq_fast import message
from metaq_fast.errors import CorruptRecordError
from metaq_fast.message import MessageSet, crc32, encode_data, encode_records, split_data


def test_crc_vectors():
    assert crc32(b"hello") == 907060870
    assert crc32(b"123456789") == 1274296614
    assert crc32(b"") == 0
    assert crc32(b"\x00\x00\x00\x09attributehello") == 1880085488
    assert list(message.crc32_many([b"hello", b"123456789", b""])) == [907060870, 1274296614, 0]


def test_record_vector_without_attribute():
    record = bytes(encode_records([b"hello"], 10000, 0))
    assert record.hex() == "00000005" "3610a686" "0000000000002710" "00000000" "68656c6c6f"


def test_record_vector_with_attribute():
    data, flag = encode_data(b"hello", "attribute")
    assert flag == 1
    record = bytes(encode_records([data], 9999, flag))
    assert record.hex() == ("00000012" "700fd3f0" "000000000000270f" "00000001"
                            "00000009" "617474726962757465" "68656c6c6f")
    assert len(record) == 38
    (msg,) = list(MessageSet.decode(record))
    assert (msg.msg_id, msg.attribute, msg.payload, msg.flag) == (9999, "attribute", b"hello", 1)


def test_empty_attribute_is_kept():
    data, flag = encode_data(b"x", "")
    assert data == b"\x00\x00\x00\x00x" and flag == 1
    assert split_data(data, flag)[0] == ""


def test_decode_stops_at_cut_record_and_reports_next_offset():
    record = bytes(encode_records([b"hello"], 1, 0))
    buf = record * 3 + record[:24]
    decoded = MessageSet.decode(buf, base_offset=1000)
    assert len(decoded) == 3
    assert decoded.next_offset == 1000 + 75
    assert decoded.offsets.tolist() == [1000, 1025, 1050]


def test_decode_rejects_bad_crc_and_negative_length():
    record = bytearray(encode_records([b"hello"], 1, 0))
    record[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        MessageSet.decode(bytes(record))
    assert len(MessageSet.decode(bytes(record), verify=False)) == 1
    with pytest.raises(CorruptRecordError):
        MessageSet.decode(b"\xff\xff\xff\xff" + bytes(16))


def test_decode_rejects_too_long_record_like_metaq_client():
    record = bytes(encode_records([b"x" * 100], 1, 0))
    with pytest.raises(CorruptRecordError, match="Too much long payload length"):
        MessageSet.decode(record, max_length=99)


def test_uniform_batch_uses_same_layout_as_mixed():
    datas = [bytes([i]) * 7 for i in range(50)]
    uniform = bytes(encode_records(datas, np.arange(50), 0))
    mixed = b"".join(bytes(encode_records([d], i, 0)) for i, d in enumerate(datas))
    assert uniform == mixed


payloads = st.lists(st.binary(max_size=300), min_size=1, max_size=60)
attributes = st.one_of(st.none(), st.text(max_size=20))


@settings(max_examples=200, deadline=None)
@given(payloads, st.lists(attributes, min_size=60, max_size=60), st.integers(0, 2**62))
def test_batch_round_trip(datas, attrs, first_id):
    blocks, flags = zip(*(encode_data(p, a) for p, a in zip(datas, attrs)))
    ids = np.arange(first_id, first_id + len(blocks), dtype=np.int64)
    buf = bytes(encode_records(list(blocks), ids, np.array(flags)))
    decoded = MessageSet.decode(buf)
    assert decoded.next_offset == len(buf)
    assert [m.payload for m in decoded] == list(datas)
    assert [m.attribute for m in decoded] == list(attrs[: len(datas)])
    assert decoded.msg_ids.tolist() == ids.tolist()
    lengths = [len(b) for b in blocks]
    by_index = MessageSet.decode_with_lengths(buf, lengths)
    assert by_index.positions.tolist() == decoded.positions.tolist()
    assert by_index.payloads() == list(datas)


@settings(max_examples=200, deadline=None)
@given(payloads, st.data())
def test_any_cut_decodes_exactly_the_whole_records(datas, data):
    buf = bytes(encode_records(datas, np.arange(len(datas)), 0))
    cut = data.draw(st.integers(0, len(buf)))
    decoded = MessageSet.decode(buf[:cut])
    ends = np.cumsum([20 + len(d) for d in datas])
    whole = int((ends <= cut).sum())
    assert len(decoded) == whole
    assert decoded.next_offset == (int(ends[whole - 1]) if whole else 0)


def test_index_mismatch_is_reported():
    buf = bytes(encode_records([b"ab", b"cde"], [1, 2], 0))
    with pytest.raises(CorruptRecordError):
        MessageSet.decode_with_lengths(buf, [2, 4])


def test_header_checks_differ_on_any_bit_of_id_or_flag():
    ids = np.array([123456789012345], dtype=np.int64)
    base = int(message.header_checks(ids, 0)[0])
    for bit in range(64):
        assert int(message.header_checks(ids ^ np.int64(1 << bit) if bit < 63 else ids ^ np.int64(-(1 << 63)), 0)[0]) != base
    for bit in range(32):
        assert int(message.header_checks(ids, 1 << bit if bit < 31 else -(1 << 31))[0]) != base
