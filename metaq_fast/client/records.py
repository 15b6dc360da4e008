"""What a consumer hands out and what it keeps per owned partition (split out of consumer.py).

Imports: numpy, xxhash, metaq_fast.message / errors / protocol, zk.paths.

``ConsumerRecord`` and ``MessageBatch`` are what ``Consumer.poll`` and iteration return
(consumer.py re-exports them). ``PartitionStuckError`` is what the application gets when one
partition cannot be fetched past one offset (a damaged record, most likely): from its
``on_error`` callback, or raised from ``poll``. ``PartitionState`` is the consumer's own book of
one owned partition. ``decode_answer`` and ``before_damage`` turn a fetch answer into records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import xxhash

from ..errors import CorruptRecordError, MetaqError
from ..message import HEADER_BYTES, MessageSet
from ..protocol import ValueReply, ValuesReply
from ..zk import paths


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    topic: str
    partition: str  # "<brokerId>-<partition>"
    offset: int
    msg_id: int
    attribute: str | None
    value: bytes


class MessageBatch:
    """Records fetched from one partition in one answer: arrays plus lazy per-record access."""

    __slots__ = ("topic", "partition", "messages")

    def __init__(self, topic: str, partition: str, messages: MessageSet):
        self.topic = topic
        self.partition = partition
        self.messages = messages

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def offsets(self) -> np.ndarray:
        return self.messages.offsets

    @property
    def msg_ids(self) -> np.ndarray:
        return self.messages.msg_ids

    @property
    def next_offset(self) -> int:
        return self.messages.next_offset

    def payloads(self) -> list[bytes]:
        return self.messages.payloads()

    def __iter__(self):
        for m in self.messages:
            yield ConsumerRecord(self.topic, self.partition, m.offset, m.msg_id, m.attribute, m.payload)


class PartitionStuckError(MetaqError):
    """Fetching ``topic``:``partition`` failed ``failures`` times in a row at ``offset``;
    ``reason`` is the broker's answer (or what the client found wrong with it). ``skip_to`` is
    where the consumer goes on (the next record), None if it stays at ``offset``."""

    def __init__(self, topic: str, partition: str, offset: int, reason: str, failures: int,
                 skip_to: int | None, why_not_skipped: str | None = None):
        then = (f"skipping the record, going on at offset {skip_to}" if skip_to is not None
                else f"not skipping it ({why_not_skipped}); still retrying with back-off")
        super().__init__(f"fetching {topic}:{partition} failed {failures} times in a row at "
                         f"offset {offset}: {reason}; {then}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason
        self.failures = failures
        self.skip_to = skip_to


def decode_answer(reply, offset: int, check_crcs) -> MessageSet:
    """The records of a ``getm`` (``ValuesReply``) or ``get`` (``ValueReply``) answer fetched at
    ``offset``. Raises ``CorruptRecordError`` (position -1: the whole answer is suspect)."""
    if isinstance(reply, ValuesReply):
        # One xxh3 over the answer vouches for it from the broker's storage to here;
        # per-record CRCs only when asked for (check_crcs="records").
        if check_crcs and xxhash.xxh3_64_intdigest(reply.data) != reply.checksum:
            raise CorruptRecordError(f"answer at offset {offset}", -1,
                                     "answer does not match its xxh3 checksum")
        return MessageSet.decode_with_lengths(reply.data, reply.record_lengths(), offset,
                                              verify=check_crcs == "records")
    return MessageSet.decode(reply.data, offset, verify=check_crcs)


def before_damage(reply, offset: int, exc: CorruptRecordError, check_crcs
                  ) -> tuple[MessageSet | None, int | None]:
    """A ``get`` answer with a damaged record (a MetaQ broker serves what its disk holds):
    ``(records before it, None)``; at the damaged record itself ``(None, where it ends by its
    own length field, if the answer holds all of it)``. A ``getm`` answer that fails a check
    was damaged on the way (the broker verifies what it serves): ``(None, None)``, fetch again."""
    if not isinstance(reply, ValueReply) or exc.position < 0:
        return None, None
    if exc.position > 0:
        try:
            return MessageSet.decode(bytes(reply.data[: exc.position]), offset,
                                     verify=check_crcs), None
        except CorruptRecordError:
            return None, None
    view = memoryview(reply.data).cast("B")
    if len(view) < HEADER_BYTES:
        return None, None
    length = int.from_bytes(view[:4], "big", signed=True)
    end = HEADER_BYTES + length
    return None, (offset + end if 0 <= length and end <= len(view) else None)


class PartitionState:
    """One owned partition: where fetching is, what was delivered, what was committed, and
    the run of failed fetches at one offset (``fail_offset``, ``fail_count``)."""

    __slots__ = ("topic", "name", "broker_id", "number", "fetch_offset", "delivered",
                 "delivered_id", "consumed", "consumed_id", "committed", "max_bytes",
                 "delay_s", "in_flight", "active", "fail_offset", "fail_count")

    def __init__(self, topic: str, name: str, offset: int, msg_id: int, max_bytes: int):
        self.topic = topic
        self.name = name
        self.broker_id, self.number = paths.parse_partition_string(name)
        self.fetch_offset = offset  # next offset to ask the broker for
        self.delivered = offset  # position after the records handed to the application
        self.delivered_id = msg_id
        self.consumed = offset  # position after the records the application is done with
        self.consumed_id = msg_id
        self.committed = offset
        self.max_bytes = max_bytes
        self.delay_s = 0.0
        self.in_flight = False
        self.active = True
        self.fail_offset = -1
        self.fail_count = 0
