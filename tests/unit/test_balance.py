"""Unit tests of metaq_fast.client.balance: MetaQ's DEFAULT and CONSIST consumer balancing.

Vectors from metaq-protocol.md §8.3 and §16.2 "Balancing vectors" (MetaQ's
DefaultStrategyUnitTest); CONSIST from §8.4, checked against an independent re-statement of the
Java code (ConsisHashStrategy / HashAlgorithm.KETAMA_HASH).
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaq_fast.client import balance as b
from metaq_fast.errors import InvalidArgumentError

CONSUMERS_4 = [f"consumer-{i}" for i in range(4)]
TEST_PARTS = [f"test-{i}" for i in range(10)]


def test_module_is_pure():
    tree = ast.parse(Path(b.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "hashlib", "bisect", "collections.abc", "metaq_fast.errors"}


# ---- DEFAULT: the reference vectors ------------------------------------------------------------


def test_four_consumers_ten_partitions():
    expected = [
        ["test-0", "test-1", "test-2"],
        ["test-3", "test-4", "test-5"],
        ["test-6", "test-7"],
        ["test-8", "test-9"],
    ]
    for consumer, parts in zip(CONSUMERS_4, expected):
        assert b.assign(consumer, CONSUMERS_4, TEST_PARTS) == parts
    assert b.assign_all(CONSUMERS_4, TEST_PARTS) == dict(zip(CONSUMERS_4, expected))


def test_three_consumers_ten_partitions_4_3_3():
    consumers = CONSUMERS_4[:3]
    assert b.assign_all(consumers, TEST_PARTS) == {
        "consumer-0": TEST_PARTS[0:4],
        "consumer-1": TEST_PARTS[4:7],
        "consumer-2": TEST_PARTS[7:10],
    }


def test_input_order_does_not_matter():
    shuffled_consumers = ["consumer-2", "consumer-0", "consumer-3", "consumer-1"]
    shuffled_parts = TEST_PARTS[::-1]
    assert b.assign_all(shuffled_consumers, shuffled_parts) == b.assign_all(CONSUMERS_4, TEST_PARTS)
    assert b.assign("consumer-1", iter(shuffled_consumers), iter(shuffled_parts)) == [
        "test-3",
        "test-4",
        "test-5",
    ]


def test_partitions_sort_as_strings():
    parts = [f"0-{i}" for i in range(12)]
    expected_order = ["0-0", "0-1", "0-10", "0-11"] + [f"0-{i}" for i in range(2, 10)]
    assert b.assign("c", ["c"], parts) == expected_order
    # two consumers split the string order, not the numeric one
    assert b.assign_all(["a", "b"], parts) == {"a": expected_order[:6], "b": expected_order[6:]}


def test_broker_ids_sort_as_strings():
    parts = ["2-0", "10-0", "1-0"]
    assert b.assign("c", ["c"], parts) == ["1-0", "10-0", "2-0"]


def test_consumer_ids_sort_as_strings():
    consumers = ["g_c10", "g_c9", "g_c1"]  # string order: g_c1, g_c10, g_c9
    parts = ["0-0", "0-1", "0-2"]
    assert b.assign_all(consumers, parts) == {"g_c1": ["0-0"], "g_c10": ["0-1"], "g_c9": ["0-2"]}


def test_more_consumers_than_partitions():
    consumers = [f"c{i}" for i in range(5)]
    assert b.assign_all(consumers, ["0-0", "0-1"]) == {
        "c0": ["0-0"],
        "c1": ["0-1"],
        "c2": [],
        "c3": [],
        "c4": [],
    }


def test_unknown_consumer_gets_nothing():
    assert b.assign("stranger", CONSUMERS_4, TEST_PARTS) == []
    assert b.assign("stranger", [], TEST_PARTS) == []
    assert b.assign_all([], TEST_PARTS) == {}


def test_no_partitions():
    assert b.assign("c", ["c"], []) == []
    assert b.assign_all(["a", "b"], []) == {"a": [], "b": []}


def test_duplicates_are_ignored():
    assert b.assign_all(["a", "a", "b"], ["0-0", "0-1", "0-1"]) == {"a": ["0-0"], "b": ["0-1"]}


def test_java_string_order_for_non_bmp():
    # Java compares UTF-16 code units: U+10000 (surrogates D800 DC00) sorts before U+FFFD.
    high, astral = "\ufffd", "\U00010000"
    assert sorted([high, astral], key=b.java_string_key) == [astral, high]
    assert list(b.assign_all([high, astral], ["0-0", "0-1"])) == [astral, high]


@pytest.mark.parametrize("bad", ["0-0", [1, 2], None])
def test_bad_inputs(bad):
    with pytest.raises((InvalidArgumentError, TypeError)):
        b.assign("c", ["c"], bad)


def test_strategy_lookup():
    assert b.strategy() is b.assign
    assert b.strategy("DEFAULT") is b.assign
    assert b.strategy("CONSIST") is b.assign_consistent
    with pytest.raises(InvalidArgumentError, match="unknown load balance strategy"):
        b.strategy("ROUND")


# ---- DEFAULT: properties -------------------------------------------------------------------

consumer_ids = st.lists(st.text(min_size=1, max_size=12), max_size=12, unique=True)
partition_strings = st.lists(
    st.tuples(st.integers(0, 20), st.integers(0, 40)).map(lambda t: f"{t[0]}-{t[1]}"),
    max_size=60,
    unique=True,
)


@settings(max_examples=300)
@given(consumer_ids, partition_strings)
def test_every_partition_exactly_once_and_balanced(consumers, parts):
    result = b.assign_all(consumers, parts)
    assert set(result) == set(consumers)
    owned = [p for mine in result.values() for p in mine]
    if not consumers:
        assert owned == []
        return
    assert sorted(owned) == sorted(parts)  # each partition exactly once
    sizes = [len(mine) for mine in result.values()]
    assert max(sizes) - min(sizes) <= 1
    # the first `extra` consumers in string order get one more
    ordered = sorted(consumers, key=b.java_string_key)
    assert [len(result[c]) for c in ordered] == sorted(sizes, reverse=True)
    for c in consumers:
        assert b.assign(c, consumers, parts) == result[c]


# ---- CONSIST -------------------------------------------------------------------------------


def _java_consist(consumer, consumers, parts):
    """Literal re-statement of MetaQ's ConsisHashStrategy.getPartitions (sorted result)."""
    ring = {}
    for c in consumers:  # MetaQ passes the string-sorted consumer list
        for i in range(160 // 4):
            d = hashlib.md5(f"{c}-{i}".encode()).digest()
            for h in range(4):
                k = (d[3 + h * 4] << 24) | (d[2 + h * 4] << 16) | (d[1 + h * 4] << 8) | d[h * 4]
                ring[k] = c
    keys = sorted(ring)
    mine = set()
    for p in parts:
        d = hashlib.md5(p.encode()).digest()
        hp = (d[3] << 24) | (d[2] << 16) | (d[1] << 8) | d[0]
        target = hp if hp in ring else next((k for k in keys if k >= hp), keys[0])
        if ring[target] == consumer:
            mine.add(p)
    return sorted(mine)


def test_partition_hash_is_ketama():
    d = hashlib.md5(b"0-0").digest()
    assert b.partition_hash("0-0") == int.from_bytes(d[:4], "little")
    keys, owners = b.consistent_ring(["a"])
    assert len(keys) == 160 and set(owners) == {"a"}
    assert keys == sorted(keys)


def test_consist_matches_java_restatement():
    consumers = sorted(f"group_consumer-{i}" for i in range(5))
    parts = [f"{br}-{p}" for br in range(3) for p in range(8)]
    for c in consumers:
        assert b.assign_consistent(c, consumers, parts) == _java_consist(c, consumers, parts)


def test_consist_deterministic_and_order_independent():
    consumers = ["x", "y", "z"]
    parts = [f"0-{i}" for i in range(30)]
    first = b.assign_all_consistent(consumers, parts)
    assert first == b.assign_all_consistent(consumers[::-1], parts[::-1])
    for c in consumers:
        assert b.assign_consistent(c, consumers, parts) == first[c]
    assert b.assign_consistent("nobody", consumers, parts) == []
    assert b.assign_all_consistent([], parts) == {}


@settings(max_examples=100)
@given(consumer_ids.filter(bool), partition_strings)
def test_consist_total_and_exclusive(consumers, parts):
    result = b.assign_all_consistent(consumers, parts)
    assert set(result) == set(consumers)
    owned = [p for mine in result.values() for p in mine]
    assert sorted(owned) == sorted(parts)
