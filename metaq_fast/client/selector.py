"""Which partition a producer sends a message to: ``Partition`` and MetaQ's partition selectors.

Pure: no I/O, no kazoo. Imports: the standard library, ``metaq_fast.errors`` and
``metaq_fast.zk.paths`` (the pure partition-string codec). Reference: ``metaq-protocol.md`` §7.1
(MetaQ's ``PartitionSelector``, ``RoundRobinPartitionSelector``, ``RandomPartitionSelector``).

A selector is anything with ``select(topic, partitions, message) -> Partition``; ``partitions``
is the producer's partition list of the topic, sorted numerically (``ClusterView
.publish_partitions``). A plain function with that signature is accepted too (``as_selector``),
like aiokafka's injectable partitioner. Every selector here raises ``NoBrokerError`` with MetaQ's
text for an empty (or ``None``) list, so a producer reports a topic nobody publishes the same way
whichever selector is configured.

Selectors are thread-safe: one instance may serve every topic of a producer from many threads.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from metaq_fast.errors import InvalidArgumentError, NoBrokerError
from metaq_fast.zk.paths import Partition  # re-exported: the client's partition type

# Java's PositiveAtomicCounter: an int incremented then masked to be non-negative.
_JAVA_INT_MASK = 0x7FFFFFFF


@runtime_checkable
class PartitionSelector(Protocol):
    """Chooses the partition of ``topic`` a message goes to.

    Raises:
        NoBrokerError: ``partitions`` is empty or ``None``.
    """

    def select(
        self, topic: str, partitions: Sequence[Partition], message: Any
    ) -> Partition: ...


SelectorFunction = Callable[[str, Sequence[Partition], Any], Partition]


def no_partition_error(topic: str) -> NoBrokerError:
    """MetaQ's error for a topic without partitions (``AbstractPartitionSelector``, typo kept)."""
    return NoBrokerError(
        f"There is no aviable partition for topic {topic},maybe you don't publish it at first?"
    )


class AbstractSelector:
    """Base of the selectors here: checks the list, then calls ``_select`` (MetaQ's layout)."""

    def select(self, topic: str, partitions: Sequence[Partition], message: Any) -> Partition:
        if not partitions:
            raise no_partition_error(topic)
        return self._select(topic, partitions, message)

    __call__ = select

    def _select(self, topic: str, partitions: Sequence[Partition], message: Any) -> Partition:
        raise NotImplementedError


class RoundRobinSelector(AbstractSelector):
    """MetaQ's default: one counter per selector, shared by all topics it serves.

    Each call increments the counter first, masks it to a non-negative Java int (so it wraps from
    2**31 - 1 to 0 as MetaQ's ``PositiveAtomicCounter`` does) and returns
    ``partitions[counter % len(partitions)]``: on ``[0-1, 0-2, 0-3]`` the picks are
    ``0-2, 0-3, 0-1, 0-2, ...``.
    """

    def __init__(self, start: int = 0) -> None:
        # itertools.count's __next__ is atomic under the GIL: no lock on the send path.
        self._counter = itertools.count(start + 1)

    def _select(self, topic: str, partitions: Sequence[Partition], message: Any) -> Partition:
        return partitions[(next(self._counter) & _JAVA_INT_MASK) % len(partitions)]


class RandomSelector(AbstractSelector):
    """A uniformly random partition (MetaQ's ``RandomPartitionSelector``).

    ``rng`` defaults to a private ``random.Random``; pass a seeded one for reproducible tests.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()

    def _select(self, topic: str, partitions: Sequence[Partition], message: Any) -> Partition:
        return partitions[self._rng.randrange(len(partitions))]


def _default_key(message: Any) -> bytes | str | None:
    if isinstance(message, (bytes, bytearray, memoryview, str)):
        return message
    return getattr(message, "key", None)


def key_hash(key: bytes | bytearray | memoryview | str) -> int:
    """The key hash of ``KeyHashSelector``: unsigned CRC32 (zlib) of the key's bytes.

    A ``str`` key is hashed as UTF-8. CRC32 rather than ``hash()``, which is salted per process.
    """
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif not isinstance(key, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(
            f"message key must be bytes or str, got {type(key).__name__}"
        )
    return zlib.crc32(key) & 0xFFFFFFFF


class KeyHashSelector(AbstractSelector):
    """Messages with the same key go to the same partition, in every process.

    Picks ``partitions[crc32(key) % len(partitions)]`` (``key_hash``), so the choice is the same
    across processes and runs while the partition list is the same; adding or removing a broker
    or partition moves keys, as with any modulo scheme.

    Args:
        key_of: ``message -> key`` (``bytes``/``str``, or ``None`` for "no key"). By default a
            ``bytes``/``str`` message is its own key, otherwise its ``key`` attribute is used.
        fallback: selector for messages without a key (default: a ``RoundRobinSelector``).
    """

    def __init__(
        self,
        key_of: Callable[[Any], bytes | str | None] | None = None,
        fallback: PartitionSelector | SelectorFunction | None = None,
    ) -> None:
        self._key_of = key_of if key_of is not None else _default_key
        self._fallback = as_selector(fallback) if fallback is not None else RoundRobinSelector()

    def _select(self, topic: str, partitions: Sequence[Partition], message: Any) -> Partition:
        key = self._key_of(message)
        if key is None:
            return self._fallback.select(topic, partitions, message)
        return partitions[key_hash(key) % len(partitions)]


class FunctionSelector(AbstractSelector):
    """Adapts a plain ``function(topic, partitions, message)`` to a selector.

    The function may return a ``Partition`` or its string ``"b-p"``; anything else raises
    ``InvalidArgumentError``.
    """

    def __init__(self, function: SelectorFunction) -> None:
        if not callable(function):
            raise InvalidArgumentError(f"selector function is not callable: {function!r}")
        self.function = function

    def _select(self, topic: str, partitions: Sequence[Partition], message: Any) -> Partition:
        chosen = self.function(topic, partitions, message)
        if isinstance(chosen, Partition):
            return chosen
        if isinstance(chosen, str):
            return Partition.parse(chosen)
        raise InvalidArgumentError(
            f"selector function {self.function!r} returned {type(chosen).__name__}, "
            "expected a Partition"
        )


def as_selector(obj: PartitionSelector | SelectorFunction) -> PartitionSelector:
    """A selector from either a selector object (returned as is) or a plain callable.

    Raises:
        InvalidArgumentError: ``obj`` has no ``select`` method and is not callable.
    """
    if callable(getattr(obj, "select", None)):
        return obj  # type: ignore[return-value]
    if callable(obj):
        return FunctionSelector(obj)
    raise InvalidArgumentError(
        f"expected a partition selector or a function(topic, partitions, message), got {obj!r}"
    )
