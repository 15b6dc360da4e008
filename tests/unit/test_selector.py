"""Unit tests of metaq_fast.client.selector: Partition and MetaQ's partition selectors.

Vectors from metaq-protocol.md §7.1 and §16.2 (RoundRobinPartitionSelectorUnitTest: the first
pick over [0-1, 0-2, 0-3] is 0-2).
"""

from __future__ import annotations

import ast
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from metaq_fast.client import selector as s
from metaq_fast.client.selector import (
    FunctionSelector,
    KeyHashSelector,
    Partition,
    PartitionSelector,
    RandomSelector,
    RoundRobinSelector,
    as_selector,
)
from metaq_fast.errors import InvalidArgumentError, NoBrokerError

P = Partition
THREE = [P(0, 1), P(0, 2), P(0, 3)]
NO_PARTITION_TEXT = (
    "There is no aviable partition for topic topicA,maybe you don't publish it at first?"
)


def test_module_is_pure():
    tree = ast.parse(Path(s.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert "kazoo" not in {m.split(".")[0] for m in imported}
    assert "socket" not in imported and "asyncio" not in imported


# ---- Partition -----------------------------------------------------------------------------


def test_partition_str_and_parse():
    assert str(P(0, 3)) == "0-3"
    assert str(P(10, 12)) == "10-12"
    assert Partition.parse("10-12") == P(10, 12)
    assert Partition.parse(str(P(7, 0))) == P(7, 0)


def test_partition_orders_numerically():
    parts = [P(10, 0), P(2, 1), P(1, 10), P(2, 0), P(1, 2)]
    assert sorted(parts) == [P(1, 2), P(1, 10), P(2, 0), P(2, 1), P(10, 0)]
    # strings sort differently; that is the consumer's order, not the producer's
    assert sorted(map(str, parts)) == ["1-10", "1-2", "10-0", "2-0", "2-1"]


def test_partition_is_frozen_and_hashable():
    p = P(1, 2)
    with pytest.raises(AttributeError):
        p.partition = 3  # type: ignore[misc]
    assert {p: 1}[P(1, 2)] == 1


@pytest.mark.parametrize("bad", ["", "1", "1-", "-1-2", "a-b", "1-2-3", " 1-2", None])
def test_partition_parse_rejects(bad):
    with pytest.raises(ValueError):
        Partition.parse(bad)


@pytest.mark.parametrize("args", [(-1, 0), (0, -1), ("0", 0), (True, 0), (0, 2**31)])
def test_partition_validates(args):
    with pytest.raises(InvalidArgumentError):
        Partition(*args)


# ---- round robin ---------------------------------------------------------------------------


def test_round_robin_vector():
    sel = RoundRobinSelector()
    picks = [sel.select("topicA", THREE, None) for _ in range(7)]
    assert picks == [P(0, 2), P(0, 3), P(0, 1), P(0, 2), P(0, 3), P(0, 1), P(0, 2)]


def test_round_robin_counter_shared_across_topics():
    sel = RoundRobinSelector()
    assert sel.select("a", THREE, None) == P(0, 2)  # counter 1
    assert sel.select("b", THREE, None) == P(0, 3)  # counter 2, another topic
    assert sel.select("a", THREE, None) == P(0, 1)  # counter 3
    two = [P(1, 0), P(1, 1)]
    assert sel.select("c", two, None) == P(1, 0)  # counter 4 % 2
    # each selector instance has its own counter
    assert RoundRobinSelector().select("a", THREE, None) == P(0, 2)


def test_round_robin_wraps_like_a_java_int():
    # The Java int wraps from 2**31-1 to -2**31, masked to 0: the pick after MAX is index 0.
    sel = RoundRobinSelector(start=2**31 - 2)
    parts = [P(0, i) for i in range(7)]
    assert sel.select("t", parts, None) == parts[(2**31 - 1) % 7]
    assert sel.select("t", parts, None) == parts[0]
    assert sel.select("t", parts, None) == parts[1]


def test_round_robin_is_even_under_threads():
    import threading

    sel = RoundRobinSelector()
    parts = [P(0, i) for i in range(4)]
    counts = {p: 0 for p in parts}
    lock = threading.Lock()

    def work():
        local = {p: 0 for p in parts}
        for _ in range(2000):
            local[sel.select("t", parts, None)] += 1
        with lock:
            for p, n in local.items():
                counts[p] += n

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(counts.values()) == {2000}


# ---- random --------------------------------------------------------------------------------


def test_random_selector_seeded_and_in_list():
    a = RandomSelector(random.Random(42))
    b = RandomSelector(random.Random(42))
    picks = [a.select("t", THREE, None) for _ in range(50)]
    assert picks == [b.select("t", THREE, None) for _ in range(50)]
    assert set(picks) == set(THREE)


# ---- key hash ------------------------------------------------------------------------------


class Msg:
    def __init__(self, key):
        self.key = key


def test_key_hash_is_crc32():
    assert s.key_hash(b"order-17") == zlib.crc32(b"order-17")
    assert s.key_hash("order-17") == s.key_hash(b"order-17")
    assert s.key_hash("é") == zlib.crc32("é".encode("utf-8"))
    with pytest.raises(InvalidArgumentError):
        s.key_hash(17)  # type: ignore[arg-type]


def test_key_hash_selector_maps_key_to_partition():
    sel = KeyHashSelector()
    parts = [P(b_, p) for b_ in range(3) for p in range(4)]
    for key in (b"a", b"order-17", "user-42", b""):
        expected = parts[s.key_hash(key) % len(parts)]
        assert sel.select("t", parts, Msg(key)) == expected
        assert sel.select("other", parts, key) == expected  # bytes/str message is its own key
        assert sel.select("t", parts, Msg(key)) == expected  # stable, not round robin


def test_key_hash_stable_across_processes():
    parts = [P(0, i) for i in range(16)]
    sel = KeyHashSelector()
    here = [str(sel.select("t", parts, f"key-{i}")) for i in range(20)]
    code = (
        "from metaq_fast.client.selector import KeyHashSelector, Partition\n"
        "parts = [Partition(0, i) for i in range(16)]\n"
        "sel = KeyHashSelector()\n"
        "print(','.join(str(sel.select('t', parts, f'key-{i}')) for i in range(20)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.split(",") == here


def test_key_hash_custom_key_and_fallback():
    parts = THREE
    sel = KeyHashSelector(key_of=lambda m: m["k"])
    assert sel.select("t", parts, {"k": "x"}) == parts[s.key_hash("x") % 3]
    # no key -> fallback, round robin by default
    assert sel.select("t", parts, {"k": None}) == P(0, 2)
    assert sel.select("t", parts, {"k": None}) == P(0, 3)
    pinned = KeyHashSelector(fallback=lambda topic, ps, m: ps[0])
    assert pinned.select("t", parts, Msg(None)) == P(0, 1)
    assert pinned.select("t", parts, object()) == P(0, 1)  # no key attribute


# ---- callables and the protocol ------------------------------------------------------------


def test_as_selector_accepts_objects_and_callables():
    rr = RoundRobinSelector()
    assert as_selector(rr) is rr
    assert isinstance(rr, PartitionSelector)

    seen = []

    def last(topic, partitions, message):
        seen.append((topic, list(partitions), message))
        return partitions[-1]

    sel = as_selector(last)
    assert isinstance(sel, FunctionSelector) and isinstance(sel, PartitionSelector)
    assert sel.select("t", THREE, "m") == P(0, 3)
    assert sel("t", THREE, "m") == P(0, 3)  # selectors are callable too
    assert seen[0] == ("t", THREE, "m")

    class Foreign:  # any object with select() is used as is
        def select(self, topic, partitions, message):
            return partitions[0]

    foreign = Foreign()
    assert as_selector(foreign) is foreign


def test_function_selector_result_checked():
    assert as_selector(lambda t, ps, m: "0-2").select("t", THREE, None) == P(0, 2)
    with pytest.raises(InvalidArgumentError, match="expected a Partition"):
        as_selector(lambda t, ps, m: 1).select("t", THREE, None)
    with pytest.raises(InvalidArgumentError):
        as_selector(42)  # type: ignore[arg-type]


# ---- empty lists ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sel",
    [
        RoundRobinSelector(),
        RandomSelector(),
        KeyHashSelector(),
        as_selector(lambda t, ps, m: ps[0]),
    ],
    ids=["round-robin", "random", "key-hash", "function"],
)
@pytest.mark.parametrize("partitions", [[], None, ()])
def test_empty_partition_list_raises_no_broker(sel, partitions):
    with pytest.raises(NoBrokerError) as info:
        sel.select("topicA", partitions, b"key")
    assert str(info.value) == NO_PARTITION_TEXT
    assert info.value.retriable and info.value.refresh_metadata
