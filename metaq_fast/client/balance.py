"""Which partitions of a topic each consumer of a group owns: MetaQ's balancing strategies.

Pure functions over consumer ids and partition strings (``"<brokerId>-<partition>"``); no I/O,
no kazoo, so they are tested without a broker (aiokafka's assignors, kazoo's partitioner split).
Imports: the standard library and ``metaq_fast.errors`` only. Reference: ``metaq-protocol.md``
§8.3 and §8.4 (MetaQ's ``DefaultLoadBalanceStrategy`` and ``ConsisHashStrategy``).

Strategy "DEFAULT" (MetaQ's default), exactly as the Java client computes it::

    consumers  = consumer ids sorted as strings
    partitions = partition strings sorted as strings    ("0-10" before "0-2")
    per, extra = divmod(len(partitions), len(consumers))
    i          = consumers.index(me)                     (absent -> no partitions)
    start      = per * i + min(i, extra)
    count      = per + (1 if i < extra else 0)
    mine       = partitions[start : start + count]

Every consumer of the group computes the same sorted lists from ZooKeeper, so each computes its
own share without talking to the others; shares are disjoint, cover all partitions, and differ in
size by at most one.

Strategy "CONSIST" (optional, "may be uneven, not recommended" in MetaQ's release notes): a ring
of 160 virtual nodes per consumer built from MD5 (ketama). A partition belongs to the consumer at
the smallest ring key >= the partition's key, wrapping to the smallest key.

"Sorted as strings" means Java's ``String.compareTo`` (UTF-16 code units), which differs from
Python's code-point order only for characters beyond the BMP; ``java_string_key`` gives it.
Input lists are de-duplicated first (MetaQ's lists come from ZooKeeper children and are unique
anyway), so a duplicate can never make a partition owned twice.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterable

from metaq_fast.errors import InvalidArgumentError

DEFAULT_STRATEGY = "DEFAULT"
CONSIST_STRATEGY = "CONSIST"

# MetaQ ConsisHashStrategy.NUM_REPS: virtual nodes per consumer, 4 ring keys per MD5 digest.
CONSIST_VIRTUAL_NODES = 160
_KEYS_PER_DIGEST = 4


def java_string_key(s: str) -> bytes:
    """Sort key ordering strings as Java's ``String.compareTo`` (UTF-16 code units) does."""
    return s.encode("utf-16-be", "surrogatepass")


def _sorted_unique(items: Iterable[str], what: str) -> list[str]:
    if isinstance(items, str):
        raise InvalidArgumentError(f"{what} must be a collection of strings, not one string")
    unique = set(items)
    for item in unique:
        if not isinstance(item, str):
            raise InvalidArgumentError(f"{what} must be strings, got {type(item).__name__}")
    return sorted(unique, key=java_string_key)


# ---- DEFAULT -------------------------------------------------------------------------------


def _share(index: int, n_consumers: int, n_partitions: int) -> tuple[int, int]:
    """``(start, count)`` of the consumer at ``index`` (MetaQ's DefaultLoadBalanceStrategy)."""
    per, extra = divmod(n_partitions, n_consumers)
    start = per * index + min(index, extra)
    count = per + (1 if index < extra else 0)
    return start, count


def assign(consumer_id: str, consumer_ids: Iterable[str], partitions: Iterable[str]) -> list[str]:
    """Partitions ``consumer_id`` owns under MetaQ's DEFAULT strategy, in string order.

    Args:
        consumer_id: this consumer's id (``<group>_<id>``).
        consumer_ids: all consumers of the group subscribed to the topic (order irrelevant).
        partitions: the topic's partition strings ``"<brokerId>-<partition>"`` (order irrelevant).

    Returns:
        A contiguous run of the string-sorted partitions; ``[]`` if ``consumer_id`` is not among
        ``consumer_ids`` or there are more consumers than partitions and it comes last.

    Raises:
        InvalidArgumentError: a list given as one string, or holding a non-string.
    """
    consumers = _sorted_unique(consumer_ids, "consumer ids")
    parts = _sorted_unique(partitions, "partitions")
    try:
        index = consumers.index(consumer_id)
    except ValueError:
        return []
    start, count = _share(index, len(consumers), len(parts))
    return parts[start : start + count]


def assign_all(consumer_ids: Iterable[str], partitions: Iterable[str]) -> dict[str, list[str]]:
    """DEFAULT assignment of every consumer: ``{consumer_id: partitions}`` (string-sorted keys).

    Equal to ``{c: assign(c, consumer_ids, partitions) for c in consumer_ids}``; ``{}`` when
    there are no consumers.
    """
    consumers = _sorted_unique(consumer_ids, "consumer ids")
    parts = _sorted_unique(partitions, "partitions")
    result: dict[str, list[str]] = {}
    for index, consumer in enumerate(consumers):
        start, count = _share(index, len(consumers), len(parts))
        result[consumer] = parts[start : start + count]
    return result


# ---- CONSIST -------------------------------------------------------------------------------


def _md5(text: str) -> bytes:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()


def _ketama_key(digest: bytes, h: int) -> int:
    # bytes 4h..4h+3 read as an unsigned little-endian 32-bit number (MetaQ's KETAMA_HASH).
    return int.from_bytes(digest[4 * h : 4 * h + 4], "little")


def partition_hash(partition: str) -> int:
    """A partition's position on the CONSIST ring: first 4 bytes of MD5, little-endian."""
    return _ketama_key(_md5(partition), 0)


def consistent_ring(consumer_ids: Iterable[str]) -> tuple[list[int], list[str]]:
    """The CONSIST ring as parallel sorted lists ``(keys, owners)``.

    Consumer ``c`` gets, for ``i`` in ``0..39``, the 4 keys of ``MD5(c + "-" + i)``. Consumers
    are added in string order and a later one takes over a key an earlier one already holds
    (Java's ``TreeMap.put`` over the sorted consumer list).
    """
    ring: dict[int, str] = {}
    for consumer in _sorted_unique(consumer_ids, "consumer ids"):
        for i in range(CONSIST_VIRTUAL_NODES // _KEYS_PER_DIGEST):
            digest = _md5(f"{consumer}-{i}")
            for h in range(_KEYS_PER_DIGEST):
                ring[_ketama_key(digest, h)] = consumer
    keys = sorted(ring)
    return keys, [ring[k] for k in keys]


def _ring_owner(keys: list[int], owners: list[str], partition: str) -> str:
    index = bisect_left(keys, partition_hash(partition))  # smallest key >= the partition's
    return owners[index if index < len(keys) else 0]


def assign_all_consistent(
    consumer_ids: Iterable[str], partitions: Iterable[str]
) -> dict[str, list[str]]:
    """CONSIST assignment of every consumer: ``{consumer_id: string-sorted partitions}``.

    Every consumer is a key (with ``[]`` if it gets nothing); ``{}`` when there are none.
    """
    consumers = _sorted_unique(consumer_ids, "consumer ids")
    parts = _sorted_unique(partitions, "partitions")
    if not consumers:
        return {}
    keys, owners = consistent_ring(consumers)
    result: dict[str, list[str]] = {c: [] for c in consumers}
    for partition in parts:
        result[_ring_owner(keys, owners, partition)].append(partition)
    return result


def assign_consistent(
    consumer_id: str, consumer_ids: Iterable[str], partitions: Iterable[str]
) -> list[str]:
    """Partitions ``consumer_id`` owns under MetaQ's CONSIST strategy, in string order.

    MetaQ returns them in ``HashSet`` order; the set is the same, we sort it. ``[]`` if
    ``consumer_id`` is not among ``consumer_ids``.
    """
    consumers = _sorted_unique(consumer_ids, "consumer ids")
    parts = _sorted_unique(partitions, "partitions")
    if consumer_id not in consumers:
        return []
    keys, owners = consistent_ring(consumers)
    return [p for p in parts if _ring_owner(keys, owners, p) == consumer_id]


# ---- by name -------------------------------------------------------------------------------

Strategy = Callable[[str, Iterable[str], Iterable[str]], list[str]]

STRATEGIES: dict[str, Strategy] = {
    DEFAULT_STRATEGY: assign,
    CONSIST_STRATEGY: assign_consistent,
}


def strategy(name: str = DEFAULT_STRATEGY) -> Strategy:
    """The strategy named by MetaQ's ``loadBalanceStrategyType`` (``DEFAULT`` or ``CONSIST``).

    Raises:
        InvalidArgumentError: any other name.
    """
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"unknown load balance strategy {str(name)[:64]!r}, expected one of "
            f"{', '.join(STRATEGIES)}"
        ) from None
