"""Unit tests of metaq_fast.zk.paths: MetaQ's ZooKeeper tree and node-data formats.

Vectors from metaq-protocol.md §6 (node table), §8.1/§8.5 (consumer ids, offsets) and §16.2
(ZK vectors of the test broker: id 0, port 8123, topic ``test`` with 2 partitions).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from metaq_fast.errors import InvalidArgumentError, InvalidNameError
from metaq_fast.zk import paths as p

# ---- module hygiene ------------------------------------------------------------------------


def test_paths_module_is_pure():
    tree = ast.parse(Path(p.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "json", "re", "collections", "dataclasses", "metaq_fast"}, imported


# ---- root ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("/meta", "/meta"),
        ("meta", "/meta"),
        ("/meta/", "/meta"),
        ("meta/", "/meta"),
        ("/a/b", "/a/b"),
        ("a/b//", "/a/b"),
        ("/", ""),
        ("", ""),
    ],
)
def test_normalize_root(root, expected):
    assert p.normalize_root(root) == expected


@pytest.mark.parametrize("root", ["/a//b", "/a/./b", "/a/../b", "/a\x00", 5, None])
def test_normalize_root_rejects_bad_components(root):
    with pytest.raises(InvalidNameError):
        p.normalize_root(root)


def test_root_is_normalised_by_every_builder():
    assert p.broker_ids_path("meta/") == "/meta/brokers/ids"
    assert p.broker_ids_path("/") == "/brokers/ids"
    assert p.consumer_ids_path("x/y", "g") == "/x/y/consumers/g/ids"
    assert p.broker_ids_path() == "/meta/brokers/ids"
    assert p.DEFAULT_ROOT == "/meta"


# ---- broker paths --------------------------------------------------------------------------


def test_broker_paths_metaq_vectors():
    assert p.brokers_path("/meta") == "/meta/brokers"
    assert p.broker_ids_path("/meta") == "/meta/brokers/ids"
    assert p.broker_id_path("/meta", 0) == "/meta/brokers/ids/0"
    assert p.broker_master_path("/meta", 0) == "/meta/brokers/ids/0/master"
    assert p.broker_slave_path("/meta", 0, 1) == "/meta/brokers/ids/0/slave1"
    assert p.master_config_checksum_path("/meta", 0) == "/meta/brokers/ids/0/master_config_checksum"
    assert p.broker_master_path("/meta", 1023) == "/meta/brokers/ids/1023/master"


def test_topic_paths_metaq_vectors():
    assert p.topics_path("/meta") == "/meta/brokers/topics"
    assert p.topics_path("/meta", "test") == "/meta/brokers/topics/test"
    assert p.topic_path("/meta", "test") == "/meta/brokers/topics/test"
    assert p.topic_broker_path("/meta", "test", 0) == "/meta/brokers/topics/test/0-m"
    assert p.topic_broker_path("/meta", "test", 0, 2) == "/meta/brokers/topics/test/0-s2"
    assert p.topics_pub_path("/meta") == "/meta/brokers/topics-pub"
    assert p.topics_pub_path("/meta", "test") == "/meta/brokers/topics-pub/test"
    assert p.topics_pub_broker_path("/meta", "test", 0) == "/meta/brokers/topics-pub/test/0-m"
    assert p.topics_pub_broker_path("/meta", "test", 3, 0) == "/meta/brokers/topics-pub/test/3-s0"
    assert p.topics_sub_path("/meta") == "/meta/brokers/topics-sub"
    assert p.topics_sub_path("/meta", "test") == "/meta/brokers/topics-sub/test"
    assert p.topics_sub_broker_path("/meta", "test", 0) == "/meta/brokers/topics-sub/test/0-m"
    assert p.topics_sub_broker_path("/meta", "test", 0, 1) == "/meta/brokers/topics-sub/test/0-s1"


@pytest.mark.parametrize("broker_id", [-1, True, 1.0, "0", None, 2**31])
def test_broker_builders_reject_bad_ids(broker_id):
    with pytest.raises(InvalidArgumentError):
        p.broker_master_path("/meta", broker_id)
    with pytest.raises(InvalidArgumentError):
        p.topics_pub_broker_path("/meta", "test", broker_id)


def test_broker_builders_reject_bad_slave_ids():
    with pytest.raises(InvalidArgumentError):
        p.broker_slave_path("/meta", 0, -1)
    with pytest.raises(InvalidArgumentError):
        p.broker_child_name(0, -1)


@pytest.mark.parametrize(
    "topic", ["", ".", "..", "a/b", "a b", "tópico", "a,b", "x" * 250, None, 7]
)
def test_topic_builders_reject_bad_names(topic):
    for build in (
        lambda: p.topic_path("/meta", topic),
        lambda: p.topic_broker_path("/meta", topic, 0),
        lambda: p.topics_pub_broker_path("/meta", topic, 0),
        lambda: p.topics_sub_broker_path("/meta", topic, 0),
        lambda: p.owners_topic_path("/meta", "g", topic),
        lambda: p.offsets_topic_path("/meta", "g", topic),
    ):
        with pytest.raises(InvalidNameError):
            build()
    if topic is not None:  # None means "the tree itself" for these two
        for tree_path in (p.topics_pub_path, p.topics_sub_path):
            with pytest.raises(InvalidNameError):
                tree_path("/meta", topic)


def test_longest_valid_name_accepted():
    name = "a" * 249
    assert p.topic_path("/meta", name).endswith("/" + name)
    assert p.validate_name("A-z.0_9") == "A-z.0_9"


def test_invalid_name_error_is_a_value_error():
    with pytest.raises(ValueError):
        p.topic_path("/meta", "a/b")


# ---- broker node names ---------------------------------------------------------------------


def test_broker_child_name_round_trip():
    assert p.broker_child_name(0) == "0-m"
    assert p.broker_child_name(12, 3) == "12-s3"
    assert p.parse_broker_child_name("0-m") == (0, True, None)
    assert p.parse_broker_child_name("12-s3") == (12, False, 3)
    for args in [(0, None), (5, 0), (1023, 7)]:
        assert p.parse_broker_child_name(p.broker_child_name(*args)) == (
            args[0],
            args[1] is None,
            args[1],
        )


@pytest.mark.parametrize(
    "name",
    ["", "0", "0-", "-m", "0-x", "0-s", "0-m1", "a-m", "-1-m", "0-s-1", " 0-m", "0-m\n", None, 5],
)
def test_parse_broker_child_name_rejects(name):
    with pytest.raises(ValueError):
        p.parse_broker_child_name(name)


def test_parse_slave_node_name():
    assert p.parse_slave_node_name("slave0") == 0
    assert p.parse_slave_node_name("slave12") == 12
    for bad in ("master", "slave", "slave-1", "master_config_checksum", "slavex", None):
        with pytest.raises(ValueError):
            p.parse_slave_node_name(bad)


# ---- consumer paths ------------------------------------------------------------------------


def test_consumer_paths_metaq_vectors():
    assert p.consumers_path("/meta") == "/meta/consumers"
    assert p.consumer_group_path("/meta", "g") == "/meta/consumers/g"
    assert p.consumer_ids_path("/meta", "g") == "/meta/consumers/g/ids"
    cid = "g_10.0.0.1-123-ab"
    assert p.consumer_id_path("/meta", "g", cid) == "/meta/consumers/g/ids/g_10.0.0.1-123-ab"
    assert p.owners_path("/meta", "g") == "/meta/consumers/g/owners"
    assert p.owners_topic_path("/meta", "g", "test") == "/meta/consumers/g/owners/test"
    assert p.owner_path("/meta", "g", "test", "0-1") == "/meta/consumers/g/owners/test/0-1"
    assert p.offsets_path("/meta", "g") == "/meta/consumers/g/offsets"
    assert p.offsets_topic_path("/meta", "g", "test") == "/meta/consumers/g/offsets/test"
    assert p.offset_path("/meta", "g", "test", "0-1") == "/meta/consumers/g/offsets/test/0-1"


@pytest.mark.parametrize("group", ["", "a/b", "..", "g g", None])
def test_consumer_builders_reject_bad_groups(group):
    with pytest.raises(InvalidNameError):
        p.consumer_ids_path("/meta", group)


@pytest.mark.parametrize("consumer_id", ["", ".", "..", "a/b", "a\x00b", "a\nb", "a\ud800", None])
def test_consumer_id_path_rejects_bad_ids(consumer_id):
    with pytest.raises(InvalidNameError):
        p.consumer_id_path("/meta", "g", consumer_id)


def test_consumer_id_path_accepts_ipv6_and_uuid_ids():
    cid = "g_fe80::1-4242-0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    assert p.consumer_id_path("/meta", "g", cid).endswith("/ids/" + cid)


@pytest.mark.parametrize("partition_str", ["0", "0-", "-1", "a-1", "0-1-2", "0_1", " 0-1", 1, None])
def test_owner_and_offset_paths_reject_bad_partition_strings(partition_str):
    with pytest.raises(ValueError):
        p.owner_path("/meta", "g", "test", partition_str)
    with pytest.raises(ValueError):
        p.offset_path("/meta", "g", "test", partition_str)


def test_consumer_id():
    assert p.consumer_id("g", "c1") == "g_c1"
    assert p.consumer_id("group-1", "10.0.0.1-123-uuid") == "group-1_10.0.0.1-123-uuid"
    with pytest.raises(InvalidNameError):
        p.consumer_id("g", "")
    with pytest.raises(InvalidNameError):
        p.consumer_id("g", "a/b")
    with pytest.raises(InvalidNameError):
        p.consumer_id("bad/group", "c1")


# ---- partition strings ---------------------------------------------------------------------


def test_partition_string_round_trip():
    assert p.partition_string(0, 0) == "0-0"
    assert p.partition_string(3, 11) == "3-11"
    assert p.parse_partition_string("3-11") == (3, 11)
    assert p.parse_partition_string("0-0") == (0, 0)


def test_partition_string_rejects():
    with pytest.raises(InvalidArgumentError):
        p.partition_string(-1, 0)
    with pytest.raises(InvalidArgumentError):
        p.partition_string(0, -1)
    with pytest.raises(InvalidArgumentError):
        p.partition_string(0, True)
    for bad in ("", "0", "0-", "-0", "0--1", "x-y", "0-1 ", "0-99999999999"):
        with pytest.raises(ValueError):
            p.parse_partition_string(bad)


# ---- node data: broker url -----------------------------------------------------------------


def test_broker_url_metaq_vectors():
    assert p.broker_url("10.0.0.5", 8123) == "meta://10.0.0.5:8123"
    assert p.broker_url("broker-host", 8123) == "meta://broker-host:8123"
    assert p.broker_url("::1", 8123) == "meta://[::1]:8123"
    assert p.broker_url("[fe80::1]", 8123) == "meta://[fe80::1]:8123"
    assert p.encode_broker_url("10.0.0.5", 8123) == b"meta://10.0.0.5:8123"


def test_parse_broker_url():
    assert p.parse_broker_url(b"meta://10.0.0.5:8123") == ("10.0.0.5", 8123)
    assert p.parse_broker_url("meta://broker-host:1") == ("broker-host", 1)
    assert p.parse_broker_url("meta://[::1]:8123") == ("::1", 8123)
    assert p.parse_broker_url("meta://10.0.0.5:8123?slaveId=1") == ("10.0.0.5", 8123)
    for host in ("127.0.0.1", "h", "fe80::1:2", "a.b.c"):
        assert p.parse_broker_url(p.encode_broker_url(host, 65535)) == (host, 65535)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"127.0.0.1:8123",
        b"http://h:1",
        b"meta://",
        b"meta://h",
        b"meta://h:",
        b"meta://:8123",
        b"meta://h:0",
        b"meta://h:65536",
        b"meta://h:-1",
        b"meta://h:x",
        b"meta://::1:8123",
        b"meta://[::1:8123",
        b"meta://[::1]8123",
        b"meta://h: 1",
        b"\xff\xfe",
        None,
    ],
)
def test_parse_broker_url_rejects(data):
    with pytest.raises(ValueError):
        p.parse_broker_url(data)


@pytest.mark.parametrize(
    ("host", "port"), [("", 1), ("h", 0), ("h", 65536), ("h", -1), ("a/b", 1), ("h", True)]
)
def test_broker_url_rejects(host, port):
    with pytest.raises(InvalidArgumentError):
        p.broker_url(host, port)


# ---- node data: topic-broker JSON and legacy count -----------------------------------------


def test_encode_topic_broker_json_metaq_vector():
    data = p.encode_topic_broker_json(2, 0)
    assert data == b'{"numParts":2,"broker":"0-m"}'
    assert json.loads(data) == {"numParts": 2, "broker": "0-m"}
    assert p.encode_topic_broker_json(10, 0) == b'{"numParts":10,"broker":"0-m"}'
    assert json.loads(p.encode_topic_broker_json(4, 1, 2)) == {"numParts": 4, "broker": "1-s2"}


def test_encode_topic_broker_json_rejects():
    for args in [(0, 0), (-1, 0), (True, 0), (1, -1), ("2", 0)]:
        with pytest.raises(InvalidArgumentError):
            p.encode_topic_broker_json(*args)


@pytest.mark.parametrize(
    "data",
    [
        b'{"numParts":2,"broker":"0-m"}',
        '{"broker":"0-m","numParts":2}',
        b'{ "broker" : "0-m" ,\n "numParts" : 2 }',
        b'{"numParts":2,"broker":"0-m","extra":true}',
    ],
)
def test_parse_topic_broker_json_tolerates_order_whitespace_extras(data):
    assert p.parse_topic_broker_json(data) == (2, "0-m")


def test_parse_topic_broker_json_slave():
    assert p.parse_topic_broker_json(b'{"numParts":3,"broker":"1-s0"}') == (3, "1-s0")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"2",
        b"[]",
        b"null",
        b"{",
        b'{"numParts":2}',
        b'{"broker":"0-m"}',
        b'{"numParts":"2","broker":"0-m"}',
        b'{"numParts":-1,"broker":"0-m"}',
        b'{"numParts":true,"broker":"0-m"}',
        b'{"numParts":2.5,"broker":"0-m"}',
        b'{"numParts":2,"broker":0}',
        b'{"numParts":2,"broker":"0"}',
        b"[" * 100000,
        b"\xff",
        None,
    ],
)
def test_parse_topic_broker_json_rejects(data):
    with pytest.raises(ValueError):
        p.parse_topic_broker_json(data)


def test_num_parts_legacy_node():
    assert p.encode_num_parts(2) == b"2"
    assert p.parse_num_parts(b"2") == 2
    assert p.parse_num_parts("10") == 10
    for bad in (b"", b"-1", b"2 ", b"x", b"+2", b"\xd9\xa3"):
        with pytest.raises(ValueError):
            p.parse_num_parts(bad)
    with pytest.raises(InvalidArgumentError):
        p.encode_num_parts(0)


# ---- node data: offsets --------------------------------------------------------------------


def test_encode_offset():
    assert p.encode_offset(-1, 1234) == b"-1-1234"
    assert p.encode_offset(7341232123, 0) == b"7341232123-0"
    with pytest.raises(InvalidArgumentError):
        p.encode_offset(-1, -5)
    with pytest.raises(InvalidArgumentError):
        p.encode_offset(2**63, 0)
    with pytest.raises(InvalidArgumentError):
        p.encode_offset(1, True)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"-1-1234", (-1, 1234)),  # MetaQ's example with an unknown id
        ("-1-1234", (-1, 1234)),
        (b"7341232123-56", (7341232123, 56)),
        (b"1234", (-1, 1234)),  # legacy plain offset
        (b"0", (-1, 0)),
        (b"-5", (-1, -5)),  # last '-' at index 0: Long.parseLong("-5"), as MetaQ
        (b"+7-+8", (7, 8)),  # Long.parseLong accepts a leading '+'
        (b"9223372036854775807-9223372036854775807", (2**63 - 1, 2**63 - 1)),
    ],
)
def test_parse_offset_metaq_semantics(data, expected):
    assert p.parse_offset(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"", b"-", b"--1", b"1-", b"a-1", b"1-a", b"1 -2", b"1-2 ", b"1_000", b"-1--5",
        b"1-9223372036854775808", b"\xff", None,
    ],
)
def test_parse_offset_rejects(data):
    with pytest.raises(ValueError):
        p.parse_offset(data)


def test_offset_round_trip():
    for msg_id, offset in [(-1, 0), (-1, 1234), (123456789012, 987654321)]:
        assert p.parse_offset(p.encode_offset(msg_id, offset)) == (msg_id, offset)


# ---- node data: consumer topics, checksum, text --------------------------------------------


def test_consumer_topics():
    assert p.encode_consumer_topics(["a", "b"]) == b"a,b"
    assert p.encode_consumer_topics(("test",)) == b"test"
    assert p.encode_consumer_topics([]) == b""
    assert p.parse_consumer_topics(b"a,b") == ["a", "b"]
    assert p.parse_consumer_topics("a, b,,") == ["a", "b"]
    assert p.parse_consumer_topics(b"") == []
    with pytest.raises(InvalidNameError):
        p.encode_consumer_topics(["a,b"])
    with pytest.raises(InvalidArgumentError):
        p.encode_consumer_topics("ab")


def test_config_checksum():
    assert p.encode_config_checksum(0xFFFFFFFF) == b"4294967295"
    assert p.parse_config_checksum(b"4294967295") == 0xFFFFFFFF
    with pytest.raises(InvalidArgumentError):
        p.encode_config_checksum(-1)
    with pytest.raises(ValueError):
        p.parse_config_checksum(b"")


def test_text_helpers():
    assert p.encode_text("é") == b"\xc3\xa9"
    assert p.decode_text(b"\xc3\xa9") == "é"
    assert p.decode_text(bytearray(b"x")) == "x"
    assert p.decode_text(memoryview(b"x")) == "x"
    assert p.decode_text("x") == "x"
    for bad in (None, b"\xff", 5):
        with pytest.raises(ValueError):
            p.decode_text(bad)


def test_section_16_2_zk_vectors():
    """The whole §16.2 set for broker 0 on port 8123 with topic ``test`` (2 partitions)."""
    root = "/meta"
    nodes = {
        p.broker_master_path(root, 0): p.encode_broker_url("host", 8123),
        p.broker_id_path(root, 0): p.encode_broker_url("host", 8123),
        p.topic_broker_path(root, "test", 0): p.encode_num_parts(2),
        p.topics_pub_broker_path(root, "test", 0): p.encode_topic_broker_json(2, 0),
        p.topics_sub_broker_path(root, "test", 0): p.encode_topic_broker_json(2, 0),
    }
    assert nodes["/meta/brokers/ids/0/master"] == b"meta://host:8123"
    assert nodes["/meta/brokers/ids/0"] == b"meta://host:8123"
    assert nodes["/meta/brokers/topics/test/0-m"] == b"2"
    for tree in ("topics-pub", "topics-sub"):
        data = nodes[f"/meta/brokers/{tree}/test/0-m"]
        assert json.loads(data) == {"numParts": 2, "broker": "0-m"}


# ---- properties: parsers only raise ValueError, encoders round-trip -------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PARSERS = [
    p.parse_broker_url,
    p.parse_topic_broker_json,
    p.parse_offset,
    p.parse_num_parts,
    p.parse_consumer_topics,
    p.parse_config_checksum,
]
_NAME_PARSERS = [p.parse_broker_child_name, p.parse_partition_string, p.parse_slave_node_name]


@given(st.one_of(st.binary(max_size=64), st.text(max_size=64)))
def test_parsers_only_raise_value_error(data):
    for parse in _PARSERS:
        try:
            parse(data)
        except ValueError:
            pass
    if isinstance(data, str):
        for parse in _NAME_PARSERS:
            try:
                parse(data)
            except ValueError:
                pass
        for build in (
            lambda: p.normalize_root(data),
            lambda: p.topic_path("/meta", data),
            lambda: p.consumer_id_path("/meta", "g", data),
            lambda: p.owner_path("/meta", "g", "t", data),
        ):
            try:
                build()
            except ValueError:
                pass


_longs = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_names = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)


@given(_longs, st.integers(min_value=0, max_value=2**63 - 1))
def test_offset_round_trip_property(msg_id, offset):
    assert p.parse_offset(p.encode_offset(msg_id, offset)) == (msg_id, offset)


@given(
    st.integers(1, 2**31 - 1), st.integers(0, 2**31 - 1), st.one_of(st.none(), st.integers(0, 99))
)
def test_topic_broker_json_round_trip_property(num_parts, broker_id, slave_id):
    data = p.encode_topic_broker_json(num_parts, broker_id, slave_id)
    assert p.parse_topic_broker_json(data) == (num_parts, p.broker_child_name(broker_id, slave_id))


@given(st.lists(_names, max_size=5))
def test_consumer_topics_round_trip_property(topics):
    assert p.parse_consumer_topics(p.encode_consumer_topics(topics)) == topics


@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
def test_partition_string_round_trip_property(broker_id, partition):
    text = p.partition_string(broker_id, partition)
    assert p.parse_partition_string(text) == (broker_id, partition)
